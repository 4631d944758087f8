//! Errors of the Kafka connector.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Result alias of the Kafka connector.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// librdkafka refused the client settings.
    #[error("invalid Kafka client settings: {0}; check [kafka] and [kafka.client]")]
    Config(String),
    /// A client operation failed.
    #[error("Kafka {operation} failed: {reason}")]
    Client {
        /// What binlake was doing.
        operation: String,
        /// librdkafka's message.
        reason: String,
        /// Whether retrying may succeed.
        transient: bool,
    },
    /// A change could not be encoded (a value that does not fit its column).
    #[error("cannot encode change: {0}")]
    Encode(String),
    /// A message is larger than the topics accept, and no dead-letter topic is set.
    #[error(
        "the change of {table} with key {key} is {size} bytes, more than capture.max_message_bytes ({limit}); raise max.message.bytes on the topic and capture.max_message_bytes, or set capture.dead_letter_topic to divert such changes"
    )]
    Oversize {
        /// `db.table`.
        table: String,
        /// The message key (JSON).
        key: String,
        /// Key + value size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Another capture with the same name took over (its producer fenced this one).
    #[error(
        "capture `{name}` was fenced: another process with the same name is running ({reason}); only one capture per name may run"
    )]
    Fenced {
        /// The capture's name.
        name: String,
        /// librdkafka's message.
        reason: String,
    },
    /// The cluster refused binlake's credentials (SASL, or a TLS handshake).
    #[error(
        "Kafka refused binlake's credentials ({reason}); check security.protocol, sasl.mechanism, sasl.username and sasl.password (or the ssl.* files) in [kafka.client]"
    )]
    Authentication {
        /// librdkafka's message (never contains the secret).
        reason: String,
    },
    /// A topic exists with a shape binlake cannot use as it is.
    #[error("topic {topic}: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// What does not match, and what to do.
        reason: String,
    },
}

impl Error {
    /// Wraps a librdkafka error raised while doing `operation`.
    pub fn client(operation: impl Into<String>, e: &KafkaError) -> Self {
        // `rdkafka_error_code()` is None for an admin request that failed as a whole
        // (e.g. CreateTopics while the broker restarts): classify its code too.
        let code = match e {
            KafkaError::AdminOp(code) => Some(*code),
            _ => e.rdkafka_error_code(),
        };
        let transient = match code {
            Some(code) => is_transient_code(code),
            None => matches!(e, KafkaError::Canceled | KafkaError::NoMessageReceived),
        } || matches!(e, KafkaError::Transaction(t) if t.is_retriable());
        // An operation that timed out while the cluster was refusing our credentials:
        // say so, and stop (retrying with the same credentials cannot succeed).
        if let Some(reason) = recent_authentication_failure() {
            return Error::Authentication { reason };
        }
        Error::Client {
            operation: operation.into(),
            reason: e.to_string(),
            transient,
        }
    }

    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Client {
                transient: true,
                ..
            }
        )
    }
}

/// The last authentication failure any client reported, and when.
static AUTH_FAILURE: Mutex<Option<(Instant, String)>> = Mutex::new(None);

/// How long an authentication failure explains later failed operations.
const AUTH_FAILURE_TTL: Duration = Duration::from_secs(300);

/// Notes a client-level error (called by every client context binlake installs): an
/// authentication failure only shows up there, while the operation that needed the
/// connection just times out.
pub(crate) fn note_client_error(error: &KafkaError, reason: &str) {
    use RDKafkaErrorCode as C;
    let code = error.rdkafka_error_code();
    if matches!(
        code,
        Some(C::Authentication | C::SaslAuthenticationFailed | C::SSL)
    ) && let Ok(mut last) = AUTH_FAILURE.lock()
    {
        *last = Some((Instant::now(), reason.to_string()));
    }
}

fn recent_authentication_failure() -> Option<String> {
    let last = AUTH_FAILURE.lock().ok()?;
    last.as_ref()
        .filter(|(at, _)| at.elapsed() < AUTH_FAILURE_TTL)
        .map(|(_, reason)| reason.clone())
}

/// The client context of binlake's producers and admin clients: client errors are logged
/// and authentication failures remembered ([`note_client_error`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientErrors;

impl rdkafka::ClientContext for ClientErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        note_client_error(&error, reason);
        tracing::warn!(error = %error, reason, "kafka client error");
    }

    // rdkafka's admin client never serves the queue client errors arrive on, so an
    // authentication failure is only seen in librdkafka's log line.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel as L;
        if (message.contains("SASL authentication error")
            || message.contains("SSL handshake failed"))
            && let Ok(mut last) = AUTH_FAILURE.lock()
        {
            *last = Some((Instant::now(), message.to_string()));
        }
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "{fac} {message}"),
            L::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ClientErrors {}

/// True for error codes that a retry later may clear.
pub(crate) fn is_transient_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::CoordinatorLoadInProgress
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::ConcurrentTransactions
            // Also what a cluster whose brokers are restarting answers to CreateTopics;
            // a replication factor larger than the cluster keeps failing, with a warning
            // at every retry.
            | C::InvalidReplicationFactor
            // Messages that could not be delivered within the transaction timeout (a broker
            // that was down): the batch is aborted and re-read.
            | C::MessageTimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_request_that_failed_on_the_transport_is_transient() {
        let e = Error::client(
            "create topic t",
            &KafkaError::AdminOp(RDKafkaErrorCode::BrokerTransportFailure),
        );
        assert!(e.is_transient(), "{e}");
        let e = Error::client(
            "create topic t",
            &KafkaError::AdminOp(RDKafkaErrorCode::TopicAuthorizationFailed),
        );
        assert!(!e.is_transient(), "{e}");
    }
}
