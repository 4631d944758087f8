//! The `[kafka]` section: brokers and librdkafka settings.

use std::collections::BTreeMap;
use std::time::Duration;

use binlake_core::{Problems, Secret};
use rdkafka::ClientConfig;
use serde::Deserialize;

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Settings binlake sets itself; a `[kafka.client]` entry for one of them would break
/// binlake's guarantees, so it is refused with the field to use instead.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "use kafka.bootstrap_servers"),
    (
        "transactional.id",
        "binlake derives it from the config's name",
    ),
    (
        "enable.idempotence",
        "binlake's producer is always idempotent",
    ),
    ("isolation.level", "binlake always reads read_committed"),
    (
        "enable.auto.commit",
        "binlake commits offsets with the data it writes",
    ),
    ("group.id", "binlake derives it from the config"),
];

/// The `[kafka]` section of the config.
///
/// ```toml
/// [kafka]
/// bootstrap_servers = "broker-1:9092,broker-2:9092"
///
/// [kafka.client]          # passed to librdkafka as they are
/// "security.protocol" = "SASL_SSL"
/// "sasl.mechanism" = "SCRAM-SHA-512"
/// "sasl.username" = "binlake"
/// "sasl.password" = "${KAFKA_PASSWORD}"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// librdkafka client properties passed through unchanged (security.protocol, sasl.*,
    /// ssl.*, compression.type, …). Values are treated as secrets: never logged.
    #[serde(default)]
    pub client: BTreeMap<String, Secret>,
    /// How long an admin request or a transaction commit may take before it is an error.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The topic of each table: `{name}`, `{db}` and `{table}` are replaced by the
    /// config's name, the database and the table (see [`crate::topics`]).
    #[serde(default = "default_topic_name")]
    pub topic_name: String,
    /// Topics of single tables, instead of `topic_name`: `"db.table" = "topic"`.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
}

fn default_topic_name() -> String {
    crate::topics::DEFAULT_TOPIC_NAME.to_string()
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client", &self.client.keys().collect::<Vec<_>>())
            .field("request_timeout", &self.request_timeout)
            .field("topic_name", &self.topic_name)
            .field("topics", &self.topics)
            .finish()
    }
}

impl KafkaConfig {
    /// A config for the given brokers with defaults for the rest.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            client: BTreeMap::new(),
            request_timeout: default_request_timeout(),
            topic_name: default_topic_name(),
            topics: BTreeMap::new(),
        }
    }

    /// The topic naming rule of `topic_name` and `topics`.
    pub fn naming(&self) -> crate::topics::TopicNaming {
        crate::topics::TopicNaming::new(&self.topic_name, &self.topics)
    }

    /// Checks values serde cannot, recording each problem under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let servers: Vec<&str> = self
            .bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            problems.push(
                path,
                "bootstrap_servers",
                "must list at least one host:port",
            );
        }
        for s in servers {
            let port_ok = s
                .rsplit_once(':')
                .and_then(|(host, port)| (!host.is_empty()).then_some(port))
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|p| p > 0);
            if !port_ok {
                problems.push(
                    path,
                    "bootstrap_servers",
                    format!("`{s}` is not host:port (e.g. broker-1:9092)"),
                );
            }
        }
        for key in self.client.keys() {
            if let Some((_, why)) = RESERVED.iter().find(|(k, _)| k == key) {
                problems.push(
                    path,
                    &format!("client.\"{key}\""),
                    format!("is set by binlake: {why}"),
                );
            }
        }
        problems.check_range(
            path,
            "request_timeout",
            self.request_timeout,
            Duration::from_secs(1)..=Duration::from_secs(3600),
            "",
        );
    }

    /// The librdkafka settings shared by every client binlake creates.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.client {
            c.set(k, v.expose());
        }
        c
    }
}
