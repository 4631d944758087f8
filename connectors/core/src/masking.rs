//! Column masking for personal data (Debezium's `column.mask.with.N.chars`,
//! `column.truncate.to.N.chars`, `column.mask.hash.<algorithm>.with.salt.<salt>`): a text
//! column's values are replaced where they are read from the source (binlog rows and
//! snapshot rows), so the original never reaches Kafka, the lake or a log line written
//! after that point.
//!
//! Text columns only (CHAR, VARCHAR, TEXT): the masked value is still text, so the
//! column's type, Connect schema and lake column stay as they are. NULL stays NULL, and a
//! value a row image left out stays left out.
//!
//! The hash is binlake's own definition, documented for joins across systems: lowercase
//! hex of SHA-256 over the salt's UTF-8 bytes followed by the value's (64 characters, not
//! shortened to the column's length). It is not byte-compatible with Debezium's hashing
//! strategies.

use std::fmt::Write as _;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::event::Row;
use crate::value::Value;

/// What a column's values become.
#[derive(Clone, PartialEq, Eq)]
pub enum Mask {
    /// This many `*`, whatever the value.
    Chars(usize),
    /// The value's first this many characters.
    Truncate(usize),
    /// Hex SHA-256 of the salt and the value (the salt is a secret: never shown).
    Sha256 {
        /// The salt.
        salt: Arc<str>,
    },
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mask::Chars(n) => write!(f, "Chars({n})"),
            Mask::Truncate(n) => write!(f, "Truncate({n})"),
            Mask::Sha256 { .. } => write!(f, "Sha256 {{ salt: \"***\" }}"),
        }
    }
}

impl Mask {
    /// Masks `v` in place (text values only; others are left as they are).
    pub fn apply(&self, v: &mut Value) {
        let Value::String(s) = v else { return };
        match self {
            Mask::Chars(n) => *s = "*".repeat(*n),
            Mask::Truncate(n) => {
                if let Some((cut, _)) = s.char_indices().nth(*n) {
                    s.truncate(cut);
                }
            }
            Mask::Sha256 { salt } => {
                let mut h = Sha256::new();
                h.update(salt.as_bytes());
                h.update(s.as_bytes());
                let mut hex = String::with_capacity(64);
                for b in h.finalize() {
                    let _ = write!(hex, "{b:02x}");
                }
                *s = hex;
            }
        }
    }
}

/// Masks `row` by `masks` (one per column of the row's schema; `None`: as it is).
pub fn apply(masks: &[Option<Mask>], row: &mut Row) {
    for (v, m) in row.iter_mut().zip(masks) {
        if let Some(m) = m {
            m.apply(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_replace_truncate_and_hash_text_only() {
        let mut row = vec![
            Value::String("alice@example.com".into()),
            Value::String("héllo wörld".into()),
            Value::String("123-45-6789".into()),
            Value::Null,
            Value::Absent,
        ];
        let masks = vec![
            Some(Mask::Chars(5)),
            Some(Mask::Truncate(4)),
            Some(Mask::Sha256 {
                salt: Arc::from("pepper"),
            }),
            Some(Mask::Chars(3)),
            Some(Mask::Truncate(1)),
        ];
        apply(&masks, &mut row);
        assert_eq!(row[0], Value::String("*****".into()));
        assert_eq!(row[1], Value::String("héll".into()));
        // printf 'pepper123-45-6789' | sha256sum
        assert_eq!(
            row[2],
            Value::String(
                "db0c794283a81a650b113847473f398c7fde98aa7f6ce9c6d3298559c4210d2c".into()
            )
        );
        assert_eq!((&row[3], &row[4]), (&Value::Null, &Value::Absent));
        assert!(!format!("{:?}", masks[2]).contains("pepper"));
    }
}
