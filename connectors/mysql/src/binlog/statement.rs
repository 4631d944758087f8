//! Row changes logged as statements: what a session with `binlog_format=STATEMENT` (or
//! `MIXED`) writes to the binlog instead of row events.
//!
//! binlake reads rows, never re-executes SQL, so a statement-based INSERT, UPDATE, DELETE,
//! REPLACE or LOAD DATA of a captured table is a change the replica would silently miss.
//! The server's global `binlog_format=ROW` is checked at start, but any session may still
//! run `SET SESSION binlog_format='STATEMENT'`.
//!
//! # Policy
//!
//! - A DML statement (QUERY event, or EXECUTE_LOAD_QUERY for `LOAD DATA`) whose target
//!   table is captured stops the stream with a definite error naming the position, the
//!   table and the statement kind (never its text: values may be secrets), and what to do.
//! - Targets are the tables a statement may write: INSERT/REPLACE/LOAD DATA's table, every
//!   table of a multi-table UPDATE, the tables a multi-table DELETE deletes from (aliases
//!   resolved). Tables only read (`INSERT … SELECT` sources, joins of a DELETE) do not
//!   count. Unqualified names belong to the event's current database.
//! - A single-table `DELETE FROM t` without WHERE, ORDER BY or LIMIT empties the table,
//!   which is exactly a truncate: it becomes one, not an error. This is also what the
//!   server logs, even under ROW, to empty a MEMORY table after a restart (MariaDB:
//!   ``DELETE FROM `db`.`t` ``).
//! - A DML statement binlake cannot parse counts as touching the captured tables when its
//!   current database is captured: stopping beats a silent gap.
//! - Everything else the server logs as statements under ROW (BEGIN/COMMIT, DDL, account
//!   statements, `CREATE TABLE … SELECT`'s CREATE, whose rows follow as row events) is not
//!   DML and passes; statements on tables that are not captured pass.

use sqlparser::ast::{FromTable, ObjectName, ObjectNamePart, Statement, TableFactor, TableObject};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

/// What a statement-based DML statement writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dml {
    /// The statement empties this table (a DELETE without conditions).
    Empties(String, String),
    /// The statement (its first keyword) writes these tables (`None`: unknown, the
    /// statement could not be parsed).
    Writes(String, Option<Vec<(String, String)>>),
}

const DML_WORDS: &[&str] = &["INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD", "WITH"];

/// The tables a statement writes as DML, `None` when it is no DML statement. `first` is
/// its first keyword, `default_db` the event's current database.
pub(crate) fn dml(sql: &str, first: &str, default_db: &str) -> Option<Dml> {
    let word = first.to_ascii_uppercase();
    if !DML_WORDS.contains(&word.as_str()) {
        return None;
    }
    let name = |n: &ObjectName| -> (String, String) {
        let parts: Vec<String> =
            n.0.iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                })
                .collect();
        match parts.as_slice() {
            [db, t] => (db.clone(), t.clone()),
            [.., t] => (default_db.to_string(), t.clone()),
            [] => (default_db.to_string(), String::new()),
        }
    };
    let statements = match Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(s) => s,
        Err(_) if word == "LOAD" => {
            return Some(Dml::Writes(
                word,
                load_data_table(sql, default_db).map(|t| vec![t]),
            ));
        }
        Err(_) if word == "WITH" => return None,
        Err(_) => return Some(Dml::Writes(word, None)),
    };
    let mut targets = Vec::new();
    for s in &statements {
        match s {
            Statement::Insert(i) => {
                if let TableObject::TableName(n) = &i.table {
                    targets.push(name(n));
                }
            }
            Statement::Update(u) => {
                let mut all = Vec::new();
                tables_of(&u.table.relation, &mut all);
                for j in &u.table.joins {
                    tables_of(&j.relation, &mut all);
                }
                targets.extend(all.iter().map(|(n, _)| name(n)));
            }
            Statement::Delete(d) => {
                let from = match &d.from {
                    FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
                };
                let mut all = Vec::new();
                for t in from.iter().chain(d.using.iter().flatten()) {
                    tables_of(&t.relation, &mut all);
                    for j in &t.joins {
                        tables_of(&j.relation, &mut all);
                    }
                }
                if d.tables.is_empty() {
                    // DELETE FROM t …: the FROM tables (with USING, FROM lists the targets).
                    let n = if d.using.is_some() {
                        from.len()
                    } else {
                        1.min(all.len())
                    };
                    let single = from.len() == 1 && from[0].joins.is_empty() && d.using.is_none();
                    if single
                        && statements.len() == 1
                        && d.selection.is_none()
                        && d.limit.is_none()
                        && d.order_by.is_empty()
                        && let Some((n, _)) = all.first()
                    {
                        let (db, t) = name(n);
                        return Some(Dml::Empties(db, t));
                    }
                    targets.extend(all.iter().take(n).map(|(n, _)| name(n)));
                } else {
                    // DELETE a, b FROM …: names or aliases of the FROM tables.
                    for target in &d.tables {
                        let (db, t) = name(target);
                        let by_alias = all.iter().find(|(_, alias)| {
                            target.0.len() == 1 && alias.as_deref() == Some(t.as_str())
                        });
                        targets.push(match by_alias {
                            Some((n, _)) => name(n),
                            None => (db, t),
                        });
                    }
                }
            }
            Statement::Query(_) => {}
            _ => {}
        }
    }
    if targets.is_empty() && word != "WITH" {
        return Some(Dml::Writes(word, None));
    }
    if targets.is_empty() {
        return None;
    }
    Some(Dml::Writes(word, Some(targets)))
}

/// Named tables of a FROM item, with their aliases.
fn tables_of(f: &TableFactor, out: &mut Vec<(ObjectName, Option<String>)>) {
    match f {
        TableFactor::Table { name, alias, .. } => {
            out.push((name.clone(), alias.as_ref().map(|a| a.name.value.clone())));
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            tables_of(&table_with_joins.relation, out);
            for j in &table_with_joins.joins {
                tables_of(&j.relation, out);
            }
        }
        _ => {}
    }
}

/// `LOAD DATA … INTO TABLE [db.]t`, which sqlparser does not parse in MySQL's form.
pub(crate) fn load_data_table(sql: &str, default_db: &str) -> Option<(String, String)> {
    let mut words = sql.split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("INTO") {
            let next = words.next()?;
            if !next.eq_ignore_ascii_case("TABLE") {
                continue;
            }
            let name = words.next()?.split('(').next()?;
            let unquote = |s: &str| s.trim_matches('`').replace("``", "`");
            let (db, t) = super::decoder::split_qualified(name);
            return Some(match db {
                Some(db) => (unquote(db), unquote(t)),
                None => (default_db.to_string(), unquote(t)),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(sql: &str) -> Option<Dml> {
        let first = sql.split_whitespace().next().unwrap_or("");
        dml(sql, first, "d")
    }

    fn writes(sql: &str, tables: &[(&str, &str)]) {
        let want: Vec<(String, String)> = tables
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        match targets(sql) {
            Some(Dml::Writes(_, Some(got))) => assert_eq!(got, want, "{sql}"),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn targets_of_dml_statements() {
        writes("INSERT INTO t VALUES (1)", &[("d", "t")]);
        writes("insert ignore into `s`.`t` (a) values (1)", &[("s", "t")]);
        writes("INSERT INTO t SELECT * FROM other.src", &[("d", "t")]);
        writes("REPLACE INTO s.t VALUES (1)", &[("s", "t")]);
        writes("UPDATE t SET a = 1 WHERE id = 2", &[("d", "t")]);
        writes(
            "UPDATE a JOIN s.b ON a.id = b.id SET a.x = b.x",
            &[("d", "a"), ("s", "b")],
        );
        writes("DELETE FROM t WHERE id = 1", &[("d", "t")]);
        writes("DELETE FROM t LIMIT 10", &[("d", "t")]);
        writes(
            "DELETE x FROM s.t AS x JOIN u ON x.id = u.id",
            &[("s", "t")],
        );
        writes(
            "DELETE FROM t1, t2 USING t1 JOIN t2 JOIN t3 WHERE t1.id = t3.id",
            &[("d", "t1"), ("d", "t2")],
        );
        writes(
            "LOAD DATA INFILE '/tmp/x' INTO TABLE `s`.`t` FIELDS TERMINATED BY ','",
            &[("s", "t")],
        );
    }

    #[test]
    fn unconditional_deletes_empty_the_table() {
        assert_eq!(
            targets("DELETE FROM `db`.`mem`"),
            Some(Dml::Empties("db".into(), "mem".into()))
        );
        assert_eq!(
            targets("DELETE FROM t"),
            Some(Dml::Empties("d".into(), "t".into()))
        );
    }

    #[test]
    fn other_statements_are_not_dml() {
        for sql in [
            "BEGIN",
            "COMMIT",
            "CREATE TABLE t (a int)",
            "CREATE TABLE t SELECT * FROM u",
            "ALTER TABLE t ADD b int",
            "GRANT SELECT ON *.* TO u",
            "SELECT 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
        ] {
            assert_eq!(targets(sql), None, "{sql}");
        }
    }

    #[test]
    fn unparsable_dml_is_unknown() {
        assert_eq!(
            targets("INSERT INTO t VALUES ((("),
            Some(Dml::Writes("INSERT".into(), None))
        );
    }
}
