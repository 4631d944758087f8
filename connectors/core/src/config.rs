//! Pieces every component's configuration uses: [`Secret`] and [`Problems`].
//!
//! Each component owns its config struct (`#[serde(deny_unknown_fields)]`, a doc comment per
//! field, defaults as functions) and a `validate(&self, path, &mut Problems)` that names the
//! field path of every problem. The binary loads the TOML file, substitutes `${ENV}`
//! references, and collects every problem of every section before reporting them together.
//!
//! Every duration and size is bounded ([`Problems::check_range`]): a value the program
//! cannot use (a duration that overflows a clock, a Kafka setting out of its range) is a
//! problem at load, named with its path and the allowed range, never a panic later.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

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

    /// Records a problem at `base.field` unless `value` is within `range`: `must be
    /// between <min> and <max>`, followed by `(why)` when `why` is not empty (what the
    /// bound comes from, or how to turn the feature off).
    pub fn check_range<T: Bounded>(
        &mut self,
        base: &str,
        field: &str,
        value: T,
        range: RangeInclusive<T>,
        why: &str,
    ) {
        if range.contains(&value) {
            return;
        }
        let mut message = format!(
            "must be between {} and {}",
            range.start().show(),
            range.end().show()
        );
        if !why.is_empty() {
            message.push_str(&format!(" ({why})"));
        }
        self.push(base, field, message);
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

/// A config value with bounds: a duration or a count. `show` writes it as the config file
/// would (`15m`, `1048576`).
pub trait Bounded: PartialOrd + Copy {
    /// The value as written in the config file.
    fn show(&self) -> String;
}

impl Bounded for Duration {
    fn show(&self) -> String {
        let ms = self.as_millis();
        if ms == 0 {
            return "0s".into();
        }
        for (unit, n) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
            if ms.is_multiple_of(n) {
                return format!("{}{unit}", ms / n);
            }
        }
        match (ms % 1000, ms / 1000) {
            (0, s) if s >= 60 => format!("{}m{}s", s / 60, s % 60),
            (0, s) => format!("{s}s"),
            _ => format!("{ms}ms"),
        }
    }
}

macro_rules! bounded_int {
    ($($t:ty),*) => {$(
        impl Bounded for $t {
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
bounded_int!(usize, u32, u64, i32, i64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s: Secret = serde_json::from_str("\"hunter2\"").expect("a string");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn ranges_name_the_path_and_the_bounds() {
        let mut p = Problems::default();
        let (s, m) = (Duration::from_secs(1), Duration::from_secs(900));
        p.check_range("capture", "transaction_timeout", m, s..=m, "");
        p.check_range(
            "capture",
            "transaction_timeout",
            m * 2,
            s..=m,
            "Kafka's limit",
        );
        p.check_range("lake", "buckets", 0u32, 1..=4096, "");
        let shown: Vec<String> = p.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "capture.transaction_timeout: must be between 1s and 15m (Kafka's limit)",
                "lake.buckets: must be between 1 and 4096",
            ]
        );
        let show = |ms| Duration::from_millis(ms).show();
        assert_eq!(
            [
                show(0),
                show(10),
                show(1500),
                show(450_000),
                show(7 * 86_400_000)
            ],
            ["0s", "10ms", "1500ms", "7m30s", "7d"]
        );
    }
}
