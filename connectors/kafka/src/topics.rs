//! Which topic holds a table's changes: `[kafka] topic_name` (a template, by default
//! `{name}.{db}.{table}`) and `[kafka.topics]` (single tables renamed), shared by capture,
//! which writes the topics, and materialize, which subscribes to them.
//!
//! Debezium names topics `<topic.prefix>.<db>.<table>` and leaves renaming to routing
//! transforms; binlake renders the template instead, with the same rule for characters
//! Kafka does not allow in topic names (`[A-Za-z0-9._-]` only): each other character of a
//! database or table name becomes `_`. Materialize subscribes with a pattern made from the
//! template and maps a topic back to its table through the schemas capture published,
//! never by parsing the topic name (a `_` in the template and in a table name would make
//! that ambiguous).

use std::collections::BTreeMap;

use binlake_core::Problems;

/// The default `[kafka] topic_name`.
pub const DEFAULT_TOPIC_NAME: &str = "{name}.{db}.{table}";

/// Topics binlake keeps next to the change topics of capture `name`; no table's topic may
/// be one of them.
pub fn internal_topics(name: &str) -> [String; 7] {
    [
        format!("{name}.offsets"),
        format!("{name}.schema-history"),
        format!("{name}.signals"),
        format!("{name}.schemas"),
        format!("{name}.schema-changes"),
        format!("{name}.transaction"),
        format!("{name}.heartbeat"),
    ]
}

/// The naming rule of change topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNaming {
    template: String,
    overrides: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Name,
    Db,
    Table,
}

/// The template's parts, or what is wrong with it.
fn parse(template: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("`{template}` has a `{{` without `}}`"))?;
        parts.push(match &rest[open + 1..open + close] {
            "name" => Part::Name,
            "db" => Part::Db,
            "table" => Part::Table,
            other => {
                return Err(format!(
                    "`{{{other}}}` is not a placeholder: use {{name}}, {{db}} and {{table}}"
                ));
            }
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

/// `s` with every character Kafka refuses in a topic name replaced by `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn valid_topic(t: &str) -> bool {
    !t.is_empty() && t.len() <= 249 && t != "." && t != ".." && sanitize(t) == t
}

impl Default for TopicNaming {
    fn default() -> Self {
        TopicNaming {
            template: DEFAULT_TOPIC_NAME.to_string(),
            overrides: BTreeMap::new(),
        }
    }
}

impl TopicNaming {
    /// The rule from `[kafka] topic_name` and `[kafka.topics]` (checked by [`Self::validate`]).
    pub fn new(template: &str, overrides: &BTreeMap<String, String>) -> Self {
        TopicNaming {
            template: template.to_string(),
            overrides: overrides.clone(),
        }
    }

    /// The topic of `db.table` for capture `name`.
    pub fn topic(&self, name: &str, db: &str, table: &str) -> String {
        if let Some(t) = self.overrides.get(&format!("{db}.{table}")) {
            return t.clone();
        }
        let mut out = String::with_capacity(self.template.len() + db.len() + table.len());
        for part in parse(&self.template).unwrap_or_default() {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Name => out.push_str(&sanitize(name)),
                Part::Db => out.push_str(&sanitize(db)),
                Part::Table => out.push_str(&sanitize(table)),
            }
        }
        out
    }

    /// What materialize subscribes to: a regular expression for the template (database
    /// and table parts match any non-empty text) and each renamed table's topic.
    pub fn subscription(&self, name: &str) -> Vec<String> {
        let mut pattern = String::from("^");
        for part in parse(&self.template).unwrap_or_default() {
            match part {
                Part::Text(t) => pattern.push_str(&regex_escape(t)),
                Part::Name => pattern.push_str(&regex_escape(&sanitize(name))),
                Part::Db | Part::Table => pattern.push_str(".+"),
            }
        }
        pattern.push('$');
        let mut out = vec![pattern];
        out.extend(self.overrides.values().cloned());
        out.sort();
        out.dedup();
        out
    }

    /// Whether `topic` has the template's form for capture `name` (any database and table).
    pub fn matches_template(&self, name: &str, topic: &str) -> bool {
        fn go(parts: &[Part<'_>], name: &str, s: &str) -> bool {
            match parts.split_first() {
                None => s.is_empty(),
                Some((Part::Text(t), rest)) => s.strip_prefix(t).is_some_and(|s| go(rest, name, s)),
                Some((Part::Name, rest)) => s
                    .strip_prefix(sanitize(name).as_str())
                    .is_some_and(|s| go(rest, name, s)),
                Some((Part::Db | Part::Table, rest)) => {
                    (1..=s.len()).any(|i| s.is_char_boundary(i) && go(rest, name, &s[i..]))
                }
            }
        }
        parse(&self.template).is_ok_and(|parts| go(&parts, name, topic))
    }

    /// Checks `topic_name` and `topics` of `[kafka]` (at `path`) for capture `name`.
    pub fn validate(&self, name: &str, path: &str, problems: &mut Problems) {
        match parse(&self.template) {
            Err(e) => problems.push(path, "topic_name", e),
            Ok(parts) => {
                if !parts.contains(&Part::Table) {
                    problems.push(
                        path,
                        "topic_name",
                        format!(
                            "`{}` must contain {{table}}: every table has its own topic",
                            self.template
                        ),
                    );
                }
                let literal: String = parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text(t) => Some(*t),
                        _ => None,
                    })
                    .collect();
                if sanitize(&literal) != literal {
                    problems.push(
                        path,
                        "topic_name",
                        format!(
                            "`{}` has characters Kafka does not allow in topic names (only letters, digits, `.`, `_` and `-`)",
                            self.template
                        ),
                    );
                }
                for internal in internal_topics(name) {
                    if self.matches_template(name, &internal) {
                        problems.push(
                            path,
                            "topic_name",
                            format!(
                                "`{}` would also name binlake's own topic `{internal}`; add {{db}} or a separator that sets change topics apart",
                                self.template
                            ),
                        );
                        break;
                    }
                }
            }
        }
        for (table, topic) in &self.overrides {
            let field = format!("topics.\"{table}\"");
            if table
                .split_once('.')
                .is_none_or(|(d, t)| d.is_empty() || t.is_empty())
            {
                problems.push(path, &field, "the key must be `database.table`");
            }
            if !valid_topic(topic) {
                problems.push(
                    path,
                    &field,
                    format!("`{topic}` is not a valid topic name (letters, digits, `.`, `_`, `-`)"),
                );
            }
            if internal_topics(name).contains(topic) {
                problems.push(
                    path,
                    &field,
                    format!("`{topic}` is one of binlake's own topics"),
                );
            }
        }
    }
}

/// `s` with the regular-expression metacharacters escaped.
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_debeziums_and_odd_characters_become_underscores() {
        let n = TopicNaming::default();
        assert_eq!(n.topic("cdc", "shop", "orders"), "cdc.shop.orders");
        assert_eq!(n.topic("cdc", "shop", "order$ ü"), "cdc.shop.order___");
        assert_eq!(n.subscription("cdc"), ["^cdc\\..+\\..+$"]);
        assert!(n.matches_template("cdc", "cdc.shop.orders"));
        assert!(!n.matches_template("cdc", "cdc.offsets"));
        let mut p = Problems::default();
        n.validate("cdc", "kafka", &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn templates_and_renamed_tables() {
        let overrides = BTreeMap::from([("shop.users".to_string(), "users-v2".to_string())]);
        let n = TopicNaming::new("cdc-{db}-{table}", &overrides);
        assert_eq!(n.topic("x", "shop", "orders"), "cdc-shop-orders");
        assert_eq!(n.topic("x", "shop", "users"), "users-v2");
        assert_eq!(n.subscription("x"), ["^cdc-.+-.+$", "users-v2"]);
        let mut p = Problems::default();
        n.validate("x", "kafka", &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn bad_templates_are_named() {
        let problems = |t: &str, overrides: &[(&str, &str)]| {
            let o = overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut p = Problems::default();
            TopicNaming::new(t, &o).validate("cdc", "kafka", &mut p);
            p.to_string()
        };
        assert!(problems("{name}.{db}", &[]).contains("must contain {table}"));
        assert!(problems("{name}.{table}", &[]).contains("binlake's own topic `cdc.offsets`"));
        assert!(problems("{name}/{db}/{table}", &[]).contains("does not allow"));
        assert!(problems("{name}.{schema}.{table}", &[]).contains("not a placeholder"));
        assert!(problems("{name}.{db}.{table", &[]).contains("without"));
        assert!(problems(DEFAULT_TOPIC_NAME, &[("orders", "t")]).contains("database.table"));
        assert!(
            problems(DEFAULT_TOPIC_NAME, &[("a.b", "bad topic")]).contains("not a valid topic")
        );
        assert!(problems(DEFAULT_TOPIC_NAME, &[("a.b", "cdc.schemas")]).contains("own topics"));
    }
}
