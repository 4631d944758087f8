//! Pieces every component's configuration uses: [`Secret`] and [`Problems`].
//!
//! Each component owns its config struct (`#[serde(deny_unknown_fields)]`, a doc comment per
//! field, defaults as functions) and a `validate(&self, path, &mut Problems)` that names the
//! field path of every problem. The binary loads the TOML file, substitutes `${ENV}`
//! references, and collects every problem of every section before reporting them together.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret string (a password, a token). `Deserialize` only, so it is never written back
/// out, and its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for handing to the client that needs it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// One problem of a configuration, at a field path such as `source.port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field, e.g. `kafka.client."sasl.password"` or `source.port`.
    pub path: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem at `path` (`base` and `field` joined with a dot; either may be
    /// empty).
    pub fn push(&mut self, base: &str, field: &str, message: impl Into<String>) {
        let path = match (base.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (_, true) => base.to_string(),
            _ => format!("{base}.{field}"),
        };
        self.0.push(Problem {
            path,
            message: message.into(),
        });
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s: Secret = serde_json::from_str("\"hunter2\"").expect("a string");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
