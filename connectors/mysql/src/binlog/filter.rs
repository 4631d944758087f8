//! Which tables and columns are captured: include/exclude glob patterns.
//!
//! Patterns match `db.table` (tables) and `db.table.column` (columns) with `*`, `?` and
//! `[...]`. A table is captured when it matches an include pattern (or there are none) and
//! no exclude pattern. The server's own schemas (`mysql`, `sys`, `information_schema`,
//! `performance_schema`) are never captured. Excluded columns are removed when the table
//! map is decoded, so their values never leave the process.
//!
//! Key columns (`[source.key_columns]`, Debezium's `message.key.columns`) give tables
//! matching a `db.table` pattern the columns that identify their rows instead of the
//! primary key: the message key, the snapshot's chunking order and the lake replica's
//! identity. They must be unique and NOT NULL; a table that lacks one of them keeps its
//! own key.
//!
//! Masked columns (`[source.masking]`, `db.table.column` patterns of text columns) have
//! their values replaced where rows are read (binlog and snapshot), see
//! `binlake_core::masking`.

use std::collections::BTreeMap;

use binlake_core::masking::Mask;
use binlake_core::{ColumnType, TableSchema};
use glob::{MatchOptions, Pattern};

const SYSTEM_SCHEMAS: &[&str] = &["mysql", "sys", "information_schema", "performance_schema"];

/// Table and column filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    exclude_columns: Vec<Pattern>,
    /// Configured key columns: the first matching pattern wins.
    keys: Vec<(Pattern, Vec<String>)>,
    /// Masked columns (`db.table.column` patterns): the first matching rule wins.
    masks: Vec<(Pattern, Mask)>,
    /// Also the server's own schemas (for `binlake binlog dump`).
    system: bool,
}

const OPTS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

impl Filter {
    /// Builds a filter; an invalid pattern is an error naming it.
    pub fn new(
        include: &[String],
        exclude: &[String],
        exclude_columns: &[String],
    ) -> Result<Self, String> {
        let compile = |ps: &[String]| -> Result<Vec<Pattern>, String> {
            ps.iter()
                .map(|p| Pattern::new(p).map_err(|e| format!("invalid pattern `{p}`: {e}")))
                .collect()
        };
        Ok(Filter {
            include: compile(include)?,
            exclude: compile(exclude)?,
            exclude_columns: compile(exclude_columns)?,
            keys: Vec::new(),
            masks: Vec::new(),
            system: false,
        })
    }

    /// The same filter with column masking (`[source.masking]`).
    pub fn with_masking(mut self, cfg: &crate::config::MaskingConfig) -> Result<Self, String> {
        let pattern = |p: &str| Pattern::new(p).map_err(|e| format!("invalid pattern `{p}`: {e}"));
        let salt: std::sync::Arc<str> = cfg
            .hash_salt
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or_default()
            .into();
        for p in &cfg.hash_sha256 {
            self.masks
                .push((pattern(p)?, Mask::Sha256 { salt: salt.clone() }));
        }
        for (p, n) in &cfg.mask_with_chars {
            self.masks.push((pattern(p)?, Mask::Chars(*n)));
        }
        for (p, n) in &cfg.truncate_to_chars {
            self.masks.push((pattern(p)?, Mask::Truncate(*n)));
        }
        Ok(self)
    }

    /// The masks of `schema`'s columns (`None` when no column is masked); an error when a
    /// rule matches a key column (the key identifies the row) or a column that is not
    /// text.
    pub fn masks_for(&self, schema: &TableSchema) -> Result<Option<Vec<Option<Mask>>>, String> {
        if self.masks.is_empty() {
            return Ok(None);
        }
        let mut any = false;
        let mut out = Vec::with_capacity(schema.columns.len());
        for (i, c) in schema.columns.iter().enumerate() {
            let name = format!("{}.{}.{}", schema.database, schema.table, c.name);
            let Some((p, m)) = self.masks.iter().find(|(p, _)| p.matches_with(&name, OPTS)) else {
                out.push(None);
                continue;
            };
            if schema.primary_key.contains(&i) {
                return Err(format!(
                    "[source.masking] `{p}` matches {name}, a column of the table's key: the key identifies the row and cannot be masked; narrow the pattern (or exclude the column from the key with [source] key_columns)"
                ));
            }
            if !matches!(c.ty, ColumnType::String { .. }) {
                return Err(format!(
                    "[source.masking] `{p}` matches {name}, a {} column: masking applies to text columns (CHAR, VARCHAR, TEXT); narrow the pattern, or leave the column out with [source] exclude_columns",
                    c.ty.sql_name()
                ));
            }
            any = true;
            out.push(Some(m.clone()));
        }
        Ok(any.then_some(out))
    }

    /// The same filter with configured key columns: `db.table` pattern → columns.
    pub fn with_key_columns(
        mut self,
        keys: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, String> {
        self.keys = keys
            .iter()
            .map(|(p, cols)| {
                Pattern::new(p)
                    .map(|p| (p, cols.clone()))
                    .map_err(|e| format!("invalid pattern `{p}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// The configured key columns of `db.table`, if any.
    fn key_of(&self, db: &str, table: &str) -> Option<&[String]> {
        if self.keys.is_empty() {
            return None;
        }
        let name = format!("{db}.{table}");
        self.keys
            .iter()
            .find(|(p, _)| p.matches_with(&name, OPTS))
            .map(|(_, cols)| cols.as_slice())
    }

    /// Whether `db.table` has configured key columns.
    pub fn has_key_columns(&self, db: &str, table: &str) -> bool {
        self.key_of(db, table).is_some()
    }

    /// Whether `column` is a configured key column of `db.table` (never excluded).
    pub fn is_key_column(&self, db: &str, table: &str, column: &str) -> bool {
        self.key_of(db, table)
            .is_some_and(|cols| cols.iter().any(|c| c == column))
    }

    /// Gives `schema` its configured key columns, when it has them all.
    pub fn apply_key(&self, schema: &mut TableSchema) {
        let Some(cols) = self.key_of(&schema.database, &schema.table) else {
            return;
        };
        if let Some(key) = cols
            .iter()
            .map(|c| schema.column_index(c))
            .collect::<Option<Vec<usize>>>()
        {
            schema.primary_key = key;
        }
    }

    /// The same filter, but the server's own schemas (`mysql`, `sys`, …) are not left out.
    pub fn with_system_schemas(mut self) -> Self {
        self.system = true;
        self
    }

    fn is_system(&self, db: &str) -> bool {
        !self.system && SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(db))
    }

    /// True when rows of `db.table` are captured.
    pub fn table_included(&self, db: &str, table: &str) -> bool {
        if self.is_system(db) {
            return false;
        }
        let name = format!("{db}.{table}");
        (self.include.is_empty() || self.include.iter().any(|p| p.matches_with(&name, OPTS)))
            && !self.exclude.iter().any(|p| p.matches_with(&name, OPTS))
    }

    /// True when some table of database `db` may be captured: schema changes of other
    /// databases are not emitted.
    pub fn database_included(&self, db: &str) -> bool {
        if self.is_system(db) {
            return false;
        }
        let db_part = |p: &Pattern| -> Option<Pattern> {
            let text = p.as_str();
            let head = text.split_once('.').map(|(h, _)| h).unwrap_or(text);
            Pattern::new(head).ok()
        };
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| db_part(p).is_some_and(|h| h.matches_with(db, OPTS)));
        let excluded_whole = self.exclude.iter().any(|p| {
            p.as_str()
                .strip_suffix(".*")
                .and_then(|h| Pattern::new(h).ok())
                .is_some_and(|h| h.matches_with(db, OPTS))
        });
        included && !excluded_whole
    }

    /// The tables of `db` the include patterns name one by one (`db.t`, no wildcard), when
    /// those are the only tables of `db` that can be captured; `None` when a pattern may
    /// match other tables of `db` (or there are no include patterns).
    pub fn literal_tables_in(&self, db: &str) -> Option<Vec<String>> {
        if self.include.is_empty() {
            return None;
        }
        let wild = |s: &str| s.contains(['*', '?', '[']);
        let mut tables = Vec::new();
        for p in &self.include {
            let text = p.as_str();
            let (head, table) = text.split_once('.').unwrap_or((text, ""));
            if wild(head) {
                if Pattern::new(head).is_ok_and(|h| h.matches_with(db, OPTS)) {
                    return None;
                }
            } else if head == db {
                if wild(table) {
                    return None;
                }
                if self.table_included(db, table) {
                    tables.push(table.to_string());
                }
            }
        }
        Some(tables)
    }

    /// True when `db.table.column` is excluded.
    pub fn column_excluded(&self, db: &str, table: &str, column: &str) -> bool {
        if self.exclude_columns.is_empty() {
            return false;
        }
        let name = format!("{db}.{table}.{column}");
        self.exclude_columns
            .iter()
            .any(|p| p.matches_with(&name, OPTS))
    }

    /// `schema` with its configured key (see [`Filter::apply_key`]) and without its
    /// excluded columns (key columns are always kept).
    pub fn project_schema(&self, mut schema: TableSchema) -> TableSchema {
        self.apply_key(&mut schema);
        let keep: Vec<bool> = schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                schema.primary_key.contains(&i)
                    || !self.column_excluded(&schema.database, &schema.table, &c.name)
            })
            .collect();
        let mut idx = Vec::with_capacity(keep.len());
        let mut next = 0usize;
        for k in &keep {
            idx.push(if *k {
                next += 1;
                Some(next - 1)
            } else {
                None
            });
        }
        let mut i = 0;
        schema.columns.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        schema.primary_key = schema.primary_key.iter().filter_map(|&k| idx[k]).collect();
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_exclude() {
        let f = Filter::new(
            &["shop.*".into(), "crm.users".into()],
            &["shop.tmp_*".into()],
            &["*.*.password*".into()],
        )
        .expect("valid");
        assert!(f.table_included("shop", "orders"));
        assert!(!f.table_included("shop", "tmp_x"));
        assert!(f.table_included("crm", "users"));
        assert!(!f.table_included("crm", "other"));
        assert!(!f.table_included("mysql", "user"));
        assert!(f.database_included("shop") && f.database_included("crm"));
        assert!(!f.database_included("other") && !f.database_included("mysql"));
        assert!(f.column_excluded("crm", "users", "password_hash"));
        assert!(!f.column_excluded("crm", "users", "email"));
        assert!(Filter::new(&["[".into()], &[], &[]).is_err());
    }

    #[test]
    fn masks_apply_to_text_columns_outside_the_key_and_name_what_they_cannot_mask() {
        use binlake_core::masking::Mask;
        use binlake_core::{Column, ColumnType};
        let text = || ColumnType::String {
            kind: binlake_core::schema::StringKind::VarChar,
            length: 80,
            charset: "utf8mb4".into(),
            json: false,
        };
        let schema = TableSchema {
            database: "shop".into(),
            table: "users".into(),
            columns: vec![
                Column::new(
                    "id",
                    ColumnType::Integer {
                        bits: 32,
                        unsigned: false,
                    },
                    false,
                ),
                Column::new("email", text(), true),
                Column::new(
                    "age",
                    ColumnType::Integer {
                        bits: 32,
                        unsigned: false,
                    },
                    true,
                ),
            ],
            primary_key: vec![0],
        };
        let cfg = |rule: &str| crate::config::MaskingConfig {
            mask_with_chars: BTreeMap::from([(rule.to_string(), 4)]),
            ..Default::default()
        };
        let f = Filter::default()
            .with_masking(&cfg("shop.users.email"))
            .unwrap_or_default();
        assert_eq!(
            f.masks_for(&schema),
            Ok(Some(vec![None, Some(Mask::Chars(4)), None]))
        );
        let f = Filter::default()
            .with_masking(&cfg("shop.other.*"))
            .unwrap_or_default();
        assert_eq!(f.masks_for(&schema), Ok(None));
        let f = Filter::default()
            .with_masking(&cfg("shop.users.*"))
            .unwrap_or_default();
        let e = f.masks_for(&schema).err().unwrap_or_default();
        assert!(e.contains("shop.users.id") && e.contains("key"), "{e}");
        let f = Filter::default()
            .with_masking(&cfg("shop.users.age"))
            .unwrap_or_default();
        let e = f.masks_for(&schema).err().unwrap_or_default();
        assert!(
            e.contains("shop.users.age") && e.contains("text columns"),
            "{e}"
        );
    }

    #[test]
    fn configured_key_columns_replace_the_key_and_are_never_excluded() {
        use binlake_core::{Column, ColumnType};
        let keys = BTreeMap::from([("shop.legacy_*".to_string(), vec!["code".to_string()])]);
        let f = Filter::new(&[], &[], &["*.*.code".into(), "*.*.secret".into()])
            .and_then(|f| f.with_key_columns(&keys))
            .expect("valid");
        let table = |name: &str| TableSchema {
            database: "shop".into(),
            table: name.into(),
            columns: vec![
                Column::new(
                    "n",
                    ColumnType::Integer {
                        bits: 32,
                        unsigned: false,
                    },
                    true,
                ),
                Column::new(
                    "code",
                    ColumnType::Integer {
                        bits: 32,
                        unsigned: false,
                    },
                    false,
                ),
                Column::new(
                    "secret",
                    ColumnType::Integer {
                        bits: 32,
                        unsigned: false,
                    },
                    true,
                ),
            ],
            primary_key: Vec::new(),
        };
        let s = f.project_schema(table("legacy_orders"));
        let names: Vec<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["n", "code"]);
        assert_eq!(s.primary_key, [1]);
        assert!(f.is_key_column("shop", "legacy_orders", "code"));
        // Other tables keep their own (here: no) key, and `code` is excluded there.
        let s = f.project_schema(table("orders"));
        assert!(s.primary_key.is_empty());
        assert_eq!(s.columns.len(), 1);
        // A table without the configured columns keeps its own key.
        let mut t = table("legacy_x");
        t.columns.remove(1);
        let s = f.project_schema(t);
        assert!(s.primary_key.is_empty());
    }
}
