//! The test Kafka broker is real: a transactional producer commits and aborts, and a
//! read_committed consumer sees exactly the committed messages, while a read_uncommitted
//! one sees the aborted ones too.

use std::collections::BTreeMap;
use std::time::Duration;

use binlake_kafka::rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use binlake_kafka::rdkafka::message::Message;
use binlake_kafka::rdkafka::producer::{FutureRecord, Producer};
use binlake_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use binlake_kafka::{
    KafkaConfig, TopicSpec, ensure_topic, read_committed_consumer, transactional_producer,
};

use crate::services::{kafka_brokers, unavailable, unique};

fn config() -> KafkaConfig {
    let mut c = KafkaConfig::new(kafka_brokers());
    c.request_timeout = Duration::from_secs(20);
    c
}

async fn drain<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    expect_at_least: usize,
) -> Vec<String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let wait = if out.len() >= expect_at_least {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(20)
        };
        match tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + wait),
            consumer.recv(),
        )
        .await
        {
            Ok(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Ok(Err(e)) => panic!("consume: {e}"),
            Err(_) => return out,
        }
    }
}

#[tokio::test]
async fn transactions_commit_and_abort_on_the_real_broker() {
    let cfg = config();
    let topic = unique("it.txn");
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::new(),
    };
    if let Err(e) = ensure_topic(&cfg, &spec).await {
        unavailable("Kafka", e);
    }
    // Creating it again is fine; with another partition count it is an error.
    ensure_topic(&cfg, &spec).await.expect("idempotent");
    let err = ensure_topic(
        &cfg,
        &TopicSpec {
            partitions: 3,
            ..spec.clone()
        },
    )
    .await
    .expect_err("partition mismatch must be reported");
    assert!(
        err.to_string().contains("exists with 1 partitions"),
        "{err}"
    );

    let producer =
        transactional_producer(&cfg, &unique("it-txn-producer"), Duration::from_secs(60))
            .await
            .expect("producer");
    let send = |payload: &'static str| {
        let record = FutureRecord::to(&topic).key("k").payload(payload);
        producer.send(record, Duration::from_secs(10))
    };
    producer.begin_transaction().unwrap();
    for p in ["c1", "c2"] {
        send(p).await.map_err(|(e, _)| e).expect("send");
    }
    producer
        .commit_transaction(Duration::from_secs(10))
        .unwrap();
    producer.begin_transaction().unwrap();
    send("aborted").await.map_err(|(e, _)| e).expect("send");
    producer.abort_transaction(Duration::from_secs(10)).unwrap();
    producer.begin_transaction().unwrap();
    send("c3").await.map_err(|(e, _)| e).expect("send");
    producer
        .commit_transaction(Duration::from_secs(10))
        .unwrap();

    let committed = read_committed_consumer(&cfg, &unique("it-group")).unwrap();
    assert_eq!(drain(&committed, &topic, 3).await, ["c1", "c2", "c3"]);

    let uncommitted: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("it-group-uncommitted"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    assert_eq!(
        drain(&uncommitted, &topic, 4).await,
        ["c1", "c2", "aborted", "c3"]
    );
}

#[tokio::test]
async fn a_second_producer_with_the_same_id_fences_the_first() {
    let cfg = config();
    let topic = unique("it.fence");
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::new(),
    };
    if let Err(e) = ensure_topic(&cfg, &spec).await {
        unavailable("Kafka", e);
    }
    let id = unique("it-fenced");
    let first = transactional_producer(&cfg, &id, Duration::from_secs(60))
        .await
        .expect("first");
    first.begin_transaction().unwrap();
    first
        .send(
            FutureRecord::to(&topic).key("k").payload("zombie"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("send");
    let second = transactional_producer(&cfg, &id, Duration::from_secs(60))
        .await
        .expect("second");
    assert!(
        first.commit_transaction(Duration::from_secs(10)).is_err(),
        "the fenced producer must not commit"
    );
    second.begin_transaction().unwrap();
    second
        .send(
            FutureRecord::to(&topic).key("k").payload("live"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("send");
    second.commit_transaction(Duration::from_secs(10)).unwrap();
    let consumer = read_committed_consumer(&cfg, &unique("it-group")).unwrap();
    assert_eq!(drain(&consumer, &topic, 1).await, ["live"]);
}
