//! The config file: TOML with `${ENV_VAR}` substitution, one section per component.
//!
//! # Loading
//!
//! 1. Parse the TOML (a syntax error stops here, with its line and column).
//! 2. Replace `${NAME}` in every string value with the environment variable `NAME`
//!    (`$${` writes a literal `${`). A variable that is not set is a problem at that
//!    field's path. Substituted values are remembered so that no message repeats them.
//! 3. Deserialize each section on its own, so a mistake in one section does not hide the
//!    mistakes in another. Within a section, a field that fails (unknown, wrong type,
//!    invalid value) is recorded with its path, removed, and the section is deserialized
//!    again, so every such mistake is reported, not only the first.
//! 4. Run each section's `validate()` for what serde cannot check.
//!
//! Every problem is reported together, each with its field path (`source.port: …`).
//!
//! # Secrets
//!
//! No message repeats a secret: values substituted from the environment are replaced by
//! `***` wherever they appear; a problem at a secret field (`source.password`, any
//! `[kafka.client]` or `[lake.storage]` value) names the kind of value it found, never
//! the value; and a TOML syntax error shows the line it is on only when that line cannot
//! hold a secret (otherwise the key and `***`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use binlake_core::debezium::EncodingConfig;
use binlake_core::{Problem, Problems};
use binlake_kafka::{CaptureConfig, KafkaConfig};
use binlake_lake::LakeConfig;
use binlake_mysql::SourceConfig;
use binlake_mysql::snapshot::SnapshotConfig;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Sections (top-level keys) the config may have.
const SECTIONS: &[&str] = &[
    "name",
    "shutdown_grace",
    "source",
    "snapshot",
    "kafka",
    "capture",
    "encoding",
    "lake",
    "materialize",
    "http",
];

/// A loaded, valid config.
#[derive(Debug)]
pub struct Config {
    /// The logical name of this source: Debezium's `topic.prefix` and `source.name`, the
    /// prefix of every topic, the capture's transactional id.
    pub name: String,
    /// The primary to capture.
    pub source: SourceConfig,
    /// The Kafka cluster, for `capture` and `materialize`.
    pub kafka: Option<KafkaConfig>,
    /// How existing rows are snapshotted.
    pub snapshot: SnapshotConfig,
    /// How capture writes to Kafka.
    pub capture: CaptureConfig,
    /// How messages are encoded.
    pub encoding: EncodingConfig,
    /// Where and how replicas and change logs are written (`materialize`, `run`, `status`,
    /// `query`).
    pub lake: LakeConfig,
    /// The materialize workers' consumer group.
    pub materialize: crate::materialize::MaterializeConfig,
    /// The HTTP endpoint (metrics, health, status).
    pub http: crate::telemetry::HttpConfig,
    /// How long the first SIGTERM/SIGINT lets the batch in flight finish and commit.
    pub shutdown_grace: Duration,
}

/// The default `shutdown_grace`.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS's message.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The file is TOML but its content has problems.
    #[error("{path} has {n} problem{s}:\n{problems}", n = problems.0.len(), s = if problems.0.len() == 1 { "" } else { "s" })]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found.
        problems: Problems,
    },
}

impl Config {
    /// Reads, substitutes, deserializes and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &shown, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], from text, with `env` standing for the environment.
    pub fn parse(
        text: &str,
        shown: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: shown.to_string(),
                reason: redact_syntax_error(text, e.to_string().trim_end()),
            })?;
        let mut loader = Loader::default();
        for (key, value) in table.iter_mut() {
            loader.substitute(value, key, env);
        }
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                loader.problems.push(
                    "",
                    key,
                    format!(
                        "unknown section or key, expected one of: {}",
                        SECTIONS.join(", ")
                    ),
                );
            }
        }
        let name: Option<String> = loader.required(&mut table, "name");
        let source: Option<SourceConfig> = loader.required(&mut table, "source");
        let kafka: Option<KafkaConfig> = loader.optional(&mut table, "kafka");
        let snapshot: SnapshotConfig = loader.optional(&mut table, "snapshot").unwrap_or_default();
        let capture: CaptureConfig = loader.optional(&mut table, "capture").unwrap_or_default();
        let encoding: EncodingConfig = loader.optional(&mut table, "encoding").unwrap_or_default();
        let lake: LakeConfig = loader.optional(&mut table, "lake").unwrap_or_default();
        let materialize: crate::materialize::MaterializeConfig = loader
            .optional(&mut table, "materialize")
            .unwrap_or_default();
        let http: crate::telemetry::HttpConfig =
            loader.optional(&mut table, "http").unwrap_or_default();
        let shutdown_grace = loader
            .optional::<humantime_serde::Serde<Duration>>(&mut table, "shutdown_grace")
            .map_or(DEFAULT_SHUTDOWN_GRACE, |d| *d);
        loader.problems.check_range(
            "",
            "shutdown_grace",
            shutdown_grace,
            Duration::from_secs(1)..=Duration::from_secs(3600),
            "keep it below Kubernetes' terminationGracePeriodSeconds",
        );

        if let Some(name) = &name {
            validate_name(name, &mut loader.problems);
        }
        if let Some(s) = &source {
            s.validate("source", &mut loader.problems);
        }
        if let Some(k) = &kafka {
            k.validate("kafka", &mut loader.problems);
            if let Some(name) = &name {
                k.naming().validate(name, "kafka", &mut loader.problems);
            }
        }
        capture.validate("capture", &mut loader.problems);
        snapshot.validate("snapshot", &mut loader.problems);
        lake.validate("lake", &mut loader.problems);
        http.validate("http", &mut loader.problems);
        match (name, source) {
            (Some(name), Some(source)) if loader.problems.is_empty() => Ok(Config {
                name,
                source,
                kafka,
                snapshot,
                capture,
                encoding,
                lake,
                materialize,
                http,
                shutdown_grace,
            }),
            _ => Err(ConfigError::Invalid {
                path: shown.to_string(),
                problems: loader.redacted_problems(),
            }),
        }
    }
}

/// The name goes into topic names, so it must be a legal Kafka topic-name prefix.
fn validate_name(name: &str, problems: &mut Problems) {
    if name.is_empty() || name.len() > 200 {
        problems.push("", "name", "must be 1 to 200 characters");
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        problems.push(
            "",
            "name",
            format!("`{name}` may use only letters, digits, '.', '_' and '-' (it prefixes Kafka topic names)"),
        );
    }
}

#[derive(Default)]
struct Loader {
    problems: Problems,
    /// Values that came from the environment: never repeated in a message.
    secrets: BTreeSet<String>,
}

impl Loader {
    fn substitute(&mut self, value: &mut Value, path: &str, env: &dyn Fn(&str) -> Option<String>) {
        match value {
            Value::String(s) if s.contains('$') => match expand(s, env) {
                Ok((expanded, used)) => {
                    self.secrets
                        .extend(used.into_iter().filter(|v| !v.is_empty()));
                    *s = expanded;
                }
                Err(message) => self.problems.push("", path, message),
            },
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.substitute(v, &format!("{path}[{i}]"), env);
                }
            }
            Value::Table(t) => {
                for (k, v) in t.iter_mut() {
                    self.substitute(v, &format!("{path}.{}", path_segment(k)), env);
                }
            }
            _ => {}
        }
    }

    fn required<T: DeserializeOwned>(&mut self, table: &mut Table, key: &str) -> Option<T> {
        match table.remove(key) {
            Some(v) => self.section(v, key),
            None => {
                self.problems.push("", key, "is required");
                None
            }
        }
    }

    fn optional<T: DeserializeOwned>(&mut self, table: &mut Table, key: &str) -> Option<T> {
        table.remove(key).and_then(|v| self.section(v, key))
    }

    /// Deserializes one section, recording and removing each failing field until the rest
    /// deserializes (or nothing more can be removed).
    fn section<T: DeserializeOwned>(&mut self, mut value: Value, key: &str) -> Option<T> {
        for _ in 0..100 {
            match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(t) => return Some(t),
                Err(e) => {
                    // toml appends "in `field`" on a second line; the path says that already.
                    let inner = e.inner().to_string();
                    let inner = inner.lines().next().unwrap_or_default().trim().to_string();
                    let segments = segments(e.path());
                    // serde reports a missing field at the struct that lacks it.
                    if let Some(field) = missing_field(&inner) {
                        let mut path = join(key, &segments);
                        path = join_field(&path, field);
                        self.problems.0.push(Problem {
                            path,
                            message: "is required".into(),
                        });
                        return None;
                    }
                    let message = match is_secret(key, &segments) {
                        true => redact_secret_message(&inner),
                        false => inner,
                    };
                    self.problems.0.push(Problem {
                        path: join(key, &segments),
                        message,
                    });
                    if segments.is_empty() || !remove_at(&mut value, &segments) {
                        return None;
                    }
                }
            }
        }
        None
    }

    fn redacted_problems(&self) -> Problems {
        let mut out = self.problems.clone();
        for p in &mut out.0 {
            for s in &self.secrets {
                if p.message.contains(s.as_str()) {
                    p.message = p.message.replace(s.as_str(), "***");
                }
            }
        }
        out
    }
}

/// Paths whose values are secrets: a field, or a table whose every value is one.
const SECRET_PATHS: &[&[&str]] = &[
    &["source", "password"],
    &["kafka", "client"],
    &["lake", "storage"],
];

/// Whether the value at `section` + `segments` is a secret or may hold one (a section
/// that holds secrets, given as a whole).
fn is_secret(section: &str, segments: &[Segment]) -> bool {
    let mut path = vec![section];
    for s in segments {
        match s {
            Segment::Key(k) => path.push(k),
            Segment::Index(_) => break,
        }
    }
    SECRET_PATHS
        .iter()
        .any(|secret| path.starts_with(secret) || secret.starts_with(&path))
}

/// A deserializer's message about a secret field, without the value: serde's `invalid
/// type: integer `73519024`, expected a string` keeps only the kind of value found.
fn redact_secret_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        let kind = found.split(['`', '"']).next().unwrap_or_default().trim();
        return format!("invalid type: {kind} (value not shown), expected {expected}");
    }
    "invalid value (not shown: the field is a secret)".to_string()
}

/// toml's syntax error with its excerpt of the file (`5 | password = "abc`) reduced to
/// the key and `***` when that line may hold a secret.
fn redact_syntax_error(text: &str, message: &str) -> String {
    let line_no = message
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("TOML parse error at line "))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse::<usize>().ok());
    let Some(line_no) = line_no.filter(|n| *n >= 1) else {
        return message.to_string();
    };
    let Some(masked) = mask_secret_line(text, line_no - 1) else {
        return message.to_string();
    };
    let excerpt = format!("{line_no} | ");
    message
        .lines()
        .map(|l| match l.starts_with(&excerpt) {
            true => format!("{excerpt}{masked}"),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `None` when line `index` of the TOML `text` cannot hold a secret; otherwise the line to
/// show instead (`key = ***`, or `***`). The file did not parse, so this reads it line by
/// line: table headers, `key =` lines and multi-line strings.
fn mask_secret_line(text: &str, index: usize) -> Option<String> {
    let mut table: Vec<String> = Vec::new();
    let mut in_multiline = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim();
        let key = key_of(line);
        let path: Vec<String> = table
            .iter()
            .cloned()
            .chain(key.iter().flat_map(|k| dotted(k)))
            .collect();
        let secret = SECRET_PATHS.iter().any(|s| {
            let n = s.len().min(path.len());
            n > 0 && path[..n].iter().zip(&s[..n]).all(|(a, b)| a == b)
        });
        if i == index {
            let safe = !in_multiline
                && (line.is_empty()
                    || line.starts_with('#')
                    || line.starts_with('[')
                    || (key.is_some() && !secret));
            return match (safe, key) {
                (true, _) => None,
                (false, Some(k)) => Some(format!("{k} = *** (not shown: it may hold a secret)")),
                (false, None) => Some("*** (not shown: it may hold a secret)".to_string()),
            };
        }
        if !in_multiline && line.starts_with('[') {
            let inner = line.trim_start_matches('[');
            let inner = inner.split(']').next().unwrap_or_default();
            table = dotted(inner);
        }
        let quotes = raw.matches("\"\"\"").count() + raw.matches("'''").count();
        if quotes % 2 == 1 {
            in_multiline = !in_multiline;
        }
    }
    None
}

/// The key of a `key = value` line (the text before the first `=` outside quotes).
fn key_of(line: &str) -> Option<&str> {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '=') => return Some(line[..i].trim()).filter(|k| !k.is_empty()),
            (None, '[' | '#') if i == 0 => return None,
            _ => {}
        }
    }
    None
}

/// The segments of a dotted key, quotes removed (`kafka."x.y"` → kafka, x, y: only the
/// leading segments matter here).
fn dotted(key: &str) -> Vec<String> {
    key.split('.')
        .map(|s| s.trim().trim_matches(['"', '\'']).to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Expands `${NAME}` references; returns the new string and the substituted values.
fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(s.len());
    let mut used = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| "unclosed `${` (write `$${` for a literal `${`)".to_string())?;
            let name = &tail[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference"
                ));
            }
            let v = env(name).ok_or_else(|| {
                format!("environment variable {name} is not set (referenced as ${{{name}}})")
            })?;
            out.push_str(&v);
            used.push(v);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, used))
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|s| match s {
            S::Map { key } => Some(Segment::Key(key.clone())),
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Enum { variant } => Some(Segment::Key(variant.clone())),
            S::Unknown => None,
        })
        .collect()
}

/// Quotes a key that is not a bare TOML key, as TOML would write it.
fn path_segment(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn join(key: &str, segments: &[Segment]) -> String {
    let mut s = key.to_string();
    for seg in segments {
        match seg {
            Segment::Key(k) => {
                s.push('.');
                s.push_str(&path_segment(k));
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn join_field(path: &str, field: &str) -> String {
    format!("{path}.{}", path_segment(field))
}

/// `missing field `user`` → `user`.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// Removes the value at `segments` from `value`; false when there is nothing there.
fn remove_at(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (seg, cur) {
            (Segment::Key(k), Value::Table(t)) => t.get_mut(k),
            (Segment::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (Segment::Key(k), Value::Table(t)) => t.remove(k).is_some(),
        (Segment::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PASS" => Some("hunter2".into()),
            "PORT_TEXT" => Some("hunter2".into()),
            _ => None,
        }
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text, "test.toml", &env) {
            Ok(c) => panic!("expected problems, got {c:?}"),
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.0.iter().map(ToString::to_string).collect()
            }
            Err(e) => panic!("{e}"),
        }
    }

    const GOOD: &str = r#"
name = "shop"
[source]
host = "127.0.0.1"
user = "binlake"
password = "${PASS}"
connect_timeout = "5s"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
[kafka.client]
"sasl.password" = "${PASS}"
[encoding]
decimal_handling = "string"
"#;

    #[test]
    fn a_good_config_loads_with_secrets_substituted_and_hidden() {
        let c = Config::parse(GOOD, "t", &env).expect("valid");
        assert_eq!(
            c.source.password.as_ref().map(|p| p.expose()),
            Some("hunter2")
        );
        assert_eq!(c.source.port, 3306);
        assert_eq!(c.source.connect_timeout.as_secs(), 5);
        assert_eq!(c.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        let c =
            Config::parse(&format!("shutdown_grace = \"45s\"\n{GOOD}"), "t", &env).expect("valid");
        assert_eq!(c.shutdown_grace, Duration::from_secs(45));
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("sasl.password"), "{debug}");
    }

    #[test]
    fn every_mistake_is_reported_with_its_path() {
        let p = problems(
            r#"
name = "shop"
colour = "blue"
shutdown_grace = "0s"
[source]
host = "db"
user = "binlake"
tls = "verify_ca"
prot = 3306
port = "high"
server_id = 0
[kafka]
bootstrap_servers = "nohost"
[encoding]
decimal_handling = "exact"
[capture]
catch_up_linger = "10m"
"#,
        );
        let joined = p.join("\n");
        for needle in [
            "colour: unknown section",
            "source.prot: unknown field",
            "source.port: invalid type",
            "source.server_id: must be > 0",
            "kafka.bootstrap_servers: `nohost` is not host:port",
            "encoding.decimal_handling: unknown variant `exact`",
            "capture.catch_up_linger: must be at most half of transaction_timeout",
            "shutdown_grace: must be between 1s and 1h",
            "source.tls_ca: verify_ca needs the CA to trust",
        ] {
            assert!(joined.contains(needle), "missing `{needle}` in:\n{joined}");
        }
        assert_eq!(p.len(), 9, "{joined}");
    }

    #[test]
    fn missing_fields_and_env_vars_are_named() {
        let p = problems(
            r#"
name = "bad name!"
[source]
host = "db"
password = "${NOT_SET}"
"#,
        );
        let joined = p.join("\n");
        assert!(
            joined.contains("source.password: environment variable NOT_SET is not set"),
            "{joined}"
        );
        assert!(joined.contains("source.user: is required"), "{joined}");
        assert!(
            joined.contains("name: `bad name!` may use only"),
            "{joined}"
        );
        let p = problems("");
        assert_eq!(p, ["name: is required", "source: is required"]);
    }

    #[test]
    fn substituted_values_never_appear_in_messages() {
        let p = problems(
            r#"
name = "shop"
[source]
host = "db"
user = "u"
port = "${PORT_TEXT}"
"#,
        );
        let joined = p.join("\n");
        assert!(joined.contains("source.port"), "{joined}");
        assert!(!joined.contains("hunter2"), "{joined}");
    }

    #[test]
    fn reserved_client_settings_are_refused() {
        let p = problems(
            r#"
name = "shop"
[source]
host = "db"
user = "u"
[kafka]
bootstrap_servers = "k:9092"
[kafka.client]
"transactional.id" = "mine"
"#,
        );
        assert_eq!(
            p,
            [
                r#"kafka.client."transactional.id": is set by binlake: binlake derives it from the config's name"#
            ]
        );
    }

    #[test]
    fn every_secret_field_is_redacted_when_malformed() {
        let p = problems(
            r#"
name = "shop"
[source]
host = "db"
user = "u"
password = 73519024
[kafka]
bootstrap_servers = "k:9092"
[kafka.client]
"sasl.password" = 61829374
"ssl.key.password" = 12.345678
[lake.storage]
aws_secret_access_key = 48271635
aws_access_key_id = true
"#,
        );
        let joined = p.join("\n");
        for needle in [
            "source.password: invalid type: integer (value not shown), expected a string",
            "kafka.client.\"sasl.password\": invalid type: integer",
            "kafka.client.\"ssl.key.password\": invalid type: floating point",
            "lake.storage.aws_secret_access_key: invalid type: integer",
            "lake.storage.aws_access_key_id: invalid type: boolean",
        ] {
            assert!(joined.contains(needle), "missing `{needle}` in:\n{joined}");
        }
        for secret in ["73519024", "61829374", "12.345678", "48271635", "true"] {
            assert!(!joined.contains(secret), "`{secret}` shown in:\n{joined}");
        }
        // A secret table given as something else.
        let p = problems(
            "name = \"shop\"\n[source]\nhost = \"db\"\nuser = \"u\"\n[kafka]\nbootstrap_servers = \"k:9092\"\nclient = \"sasl.password=w1despread\"\n[lake]\nstorage = 9988776655\n",
        );
        let joined = p.join("\n");
        assert!(
            joined.contains("kafka.client: invalid type: string"),
            "{joined}"
        );
        assert!(
            joined.contains("lake.storage: invalid type: integer"),
            "{joined}"
        );
        assert!(!joined.contains("w1despread"), "{joined}");
        assert!(!joined.contains("9988776655"), "{joined}");
    }

    fn syntax_error(text: &str) -> String {
        match Config::parse(text, "test.toml", &env) {
            Err(e @ ConfigError::Syntax { .. }) => e.to_string(),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn a_syntax_error_never_shows_a_secret() {
        for (text, secret, line) in [
            (
                "name = \"shop\"\n[source]\nhost = \"db\"\npassword = \"hunt3r2-unterminated\nuser = \"u\"\n",
                "hunt3r2",
                "4 | password = ***",
            ),
            (
                "name = \"shop\"\n[lake.storage]\naws_secret_access_key = \"wJalrXUtnFEMI\n",
                "wJalrXUtnFEMI",
                "3 | aws_secret_access_key = ***",
            ),
            (
                "[kafka.client]\n\"sasl.password\" = 'l1teral\n",
                "l1teral",
                "2 | \"sasl.password\" = ***",
            ),
            (
                "source = { host = \"db\", password = \"inl1ne }\n",
                "inl1ne",
                "1 | source = ***",
            ),
            (
                "[source]\npassword = \"\"\"first\nsec0nd-part\n",
                "sec0nd",
                "*** (not shown: it may hold a secret)",
            ),
        ] {
            let e = syntax_error(text);
            assert!(!e.contains(secret), "`{secret}` shown in:\n{e}");
            assert!(e.contains(line), "missing `{line}` in:\n{e}");
            assert!(e.contains("TOML parse error at line"), "{e}");
        }
        // A line that cannot hold a secret is shown as it is.
        let e = syntax_error("name = \"shop\"\n[source]\nhost = \"db\n");
        assert!(e.contains("3 | host = \"db"), "{e}");
    }

    #[test]
    fn durations_and_sizes_out_of_range_are_problems_not_panics() {
        let huge = "\"500000000000y\"";
        let p = problems(&format!(
            r#"
name = "shop"
shutdown_grace = {huge}
[source]
host = "db"
user = "u"
connect_timeout = {huge}
[kafka]
bootstrap_servers = "k:9092"
request_timeout = {huge}
[capture]
linger = {huge}
catch_up_linger = {huge}
heartbeat_interval = {huge}
transaction_timeout = {huge}
max_batch_rows = 9223372036854775807
max_message_bytes = 4000000000
[snapshot]
chunk_size = 9223372036854775807
[lake]
flush_interval = {huge}
maintenance_interval = {huge}
vacuum_retention = {huge}
max_batch_rows = 9223372036854775807
max_batch_bytes = 9223372036854775807
compact_min_files = 9223372036854775807
"#
        ));
        let joined = p.join("\n");
        for needle in [
            "shutdown_grace: must be between 1s and 1h",
            "source.connect_timeout: must be between 100ms and 1h",
            "kafka.request_timeout: must be between 1s and 1h",
            "capture.linger: must be at most half of transaction_timeout",
            "capture.catch_up_linger: must be at most half of transaction_timeout",
            "capture.heartbeat_interval: must be between 100ms and 1h",
            "capture.transaction_timeout: must be between 1s and 15m",
            "capture.max_batch_rows: must be between 1 and",
            "capture.max_message_bytes: must be between 1024 and 1000000000",
            "snapshot.chunk_size: must be between 1 and",
            "lake.flush_interval: must be between 10ms and 1h",
            "lake.maintenance_interval: must be between 1s and 30d (or 0s to turn maintenance off)",
            "lake.vacuum_retention: must be between 0s and 3650d",
            "lake.max_batch_rows: must be between 1 and",
            "lake.max_batch_bytes: must be between 1048576 and",
            "lake.compact_min_files: must be between 2 and",
        ] {
            assert!(joined.contains(needle), "missing `{needle}` in:\n{joined}");
        }
        assert_eq!(p.len(), 16, "{joined}");
    }

    #[test]
    fn a_transaction_timeout_beyond_kafkas_limit_is_refused() {
        let p = problems(&format!("{GOOD}[capture]\ntransaction_timeout = \"30d\"\n"));
        assert_eq!(
            p,
            [
                "capture.transaction_timeout: must be between 1s and 15m (Kafka's transaction.max.timeout.ms default)"
            ]
        );
    }

    #[test]
    fn expansion() {
        assert_eq!(
            expand("a${PASS}b$${x}$y", &env).expect("ok").0,
            "ahunter2b${x}$y"
        );
        assert!(expand("${PASS", &env).is_err());
        assert!(expand("${A-B}", &env).is_err());
    }
}
