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
    /// The cluster refused binlake's SASL credentials.
    #[error(
        "Kafka refused binlake's credentials ({reason}); check security.protocol, sasl.mechanism, sasl.username and sasl.password in [kafka.client]"
    )]
    Authentication {
        /// librdkafka's message (never contains the secret).
        reason: String,
    },
    /// binlake could not verify a broker's TLS certificate.
    #[error(
        "binlake does not trust the Kafka broker's TLS certificate ({reason}); set ssl.ca.location in [kafka.client] to the CA that signed the brokers' certificates, and check that each certificate names its host as written in kafka.bootstrap_servers (ssl.endpoint.identification.algorithm = \"https\" checks it)"
    )]
    BrokerCertificate {
        /// librdkafka's message.
        reason: String,
    },
    /// A broker refused binlake's TLS client certificate, or its absence.
    #[error(
        "the Kafka broker refused binlake's TLS client certificate ({reason}); the listener requires a client certificate signed by a CA the brokers trust: set ssl.certificate.location and ssl.key.location (and ssl.key.password if the key is encrypted) in [kafka.client]"
    )]
    ClientCertificate {
        /// librdkafka's message.
        reason: String,
    },
    /// Another TLS handshake failure.
    #[error(
        "the TLS handshake with Kafka failed ({reason}); check security.protocol and the ssl.* settings in [kafka.client]"
    )]
    Tls {
        /// librdkafka's message.
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
        // An operation that timed out while the cluster was refusing our credentials (or
        // we its certificate): say so, and stop (retrying with the same settings cannot
        // succeed).
        if let Some((refusal, reason)) = recent_authentication_failure() {
            return refusal.error(reason);
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

    /// librdkafka refused the client settings: its message, with a hint where it is
    /// terse (a `*.location` file it could not read).
    pub fn config(e: &KafkaError) -> Self {
        let msg = e.to_string();
        if msg.contains(".location failed") && msg.contains("system lib") {
            return Error::Config(format!(
                "{msg} (the file that setting names does not exist or cannot be read)"
            ));
        }
        Error::Config(msg)
    }
}

/// Why the cluster and binlake did not get as far as a working connection, as told by
/// librdkafka's error and log messages (their codes do not tell the cases apart: a client
/// certificate refused under TLS 1.3 only shows as a transport failure after the
/// handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// SASL authentication failed.
    Sasl,
    /// binlake did not verify the broker's certificate (wrong CA, wrong host name).
    BrokerCertificate,
    /// The broker refused binlake's client certificate, or that it sent none.
    ClientCertificate,
    /// Another TLS handshake failure.
    Tls,
}

impl Refusal {
    /// Classifies a client error (or log line) of librdkafka; `None` when it is no
    /// authentication or TLS failure.
    pub(crate) fn of(code: Option<RDKafkaErrorCode>, message: &str) -> Option<Refusal> {
        use RDKafkaErrorCode as C;
        let m = message.to_ascii_lowercase();
        if m.contains("certificate verify failed") {
            return Some(Refusal::BrokerCertificate);
        }
        // TLS alerts the broker sends when it does not accept the client's certificate.
        if [
            "alert bad certificate",
            "alert certificate required",
            "alert unknown ca",
            "alert certificate unknown",
            "alert certificate expired",
            "alert certificate revoked",
            "alert unsupported certificate",
        ]
        .iter()
        .any(|a| m.contains(a))
        {
            return Some(Refusal::ClientCertificate);
        }
        if m.contains("sasl authentication error")
            || matches!(code, Some(C::Authentication | C::SaslAuthenticationFailed))
        {
            return Some(Refusal::Sasl);
        }
        if m.contains("ssl handshake failed") || code == Some(C::SSL) {
            return Some(Refusal::Tls);
        }
        None
    }

    /// The error that says what to check.
    pub(crate) fn error(self, reason: String) -> Error {
        match self {
            Refusal::Sasl => Error::Authentication { reason },
            Refusal::BrokerCertificate => Error::BrokerCertificate { reason },
            Refusal::ClientCertificate => Error::ClientCertificate { reason },
            Refusal::Tls => Error::Tls { reason },
        }
    }
}

/// The last authentication or TLS failure any client reported, and when.
static AUTH_FAILURE: Mutex<Option<(Instant, Refusal, String)>> = Mutex::new(None);

/// How long an authentication failure explains later failed operations.
const AUTH_FAILURE_TTL: Duration = Duration::from_secs(300);

fn note_refusal(code: Option<RDKafkaErrorCode>, message: &str) {
    if let Some(refusal) = Refusal::of(code, message)
        && let Ok(mut last) = AUTH_FAILURE.lock()
    {
        *last = Some((Instant::now(), refusal, message.to_string()));
    }
}

/// Notes a client-level error (called by every client context binlake installs): an
/// authentication or TLS failure only shows up there, while the operation that needed
/// the connection just times out.
pub(crate) fn note_client_error(error: &KafkaError, reason: &str) {
    note_refusal(error.rdkafka_error_code(), reason);
}

fn recent_authentication_failure() -> Option<(Refusal, String)> {
    let last = AUTH_FAILURE.lock().ok()?;
    last.as_ref()
        .filter(|(at, _, _)| at.elapsed() < AUTH_FAILURE_TTL)
        .map(|(_, refusal, reason)| (*refusal, reason.clone()))
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
        note_refusal(None, message);
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

    #[test]
    fn an_unreadable_location_file_is_named() {
        let e = Error::config(&KafkaError::ClientCreation(
            "ssl.ca.location failed: error:05880002:x509 certificate routines::system lib".into(),
        ));
        assert!(
            e.to_string().contains("does not exist or cannot be read"),
            "{e}"
        );
        assert!(!e.is_transient());
    }

    // The messages librdkafka 2.12 gives against tests/services/kafka.sh's listeners.
    #[test]
    fn tls_and_sasl_failures_are_told_apart() {
        use RDKafkaErrorCode as C;
        let cases = [
            (
                Some(C::SSL),
                "ssl://127.0.0.1:19095/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 4ms in state SSL_HANDSHAKE)",
                Some(Refusal::BrokerCertificate),
            ),
            (
                Some(C::BrokerTransportFailure),
                "ssl://127.0.0.1:19097/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 0ms in state APIVERSION_QUERY)",
                Some(Refusal::ClientCertificate),
            ),
            (
                Some(C::Authentication),
                "sasl_ssl://127.0.0.1:19096/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 312ms in state AUTH_REQ)",
                Some(Refusal::Sasl),
            ),
            (
                Some(C::SSL),
                "ssl://127.0.0.1:19095/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong version number",
                Some(Refusal::Tls),
            ),
            // A broker going away is no refusal: it stays transient.
            (
                Some(C::BrokerTransportFailure),
                "127.0.0.1:19092/1: Disconnected (after 5012ms in state UP)",
                None,
            ),
        ];
        for (code, message, want) in cases {
            assert_eq!(Refusal::of(code, message), want, "{message}");
        }
        let e = Refusal::ClientCertificate.error("alert bad certificate".into());
        assert!(!e.is_transient());
        assert!(e.to_string().contains("ssl.certificate.location"), "{e}");
        let e = Refusal::BrokerCertificate.error("certificate verify failed".into());
        assert!(e.to_string().contains("ssl.ca.location"), "{e}");
    }
}
