//! Schema history: the schema of every table at every point of the binlog.
//!
//! # Why a history
//!
//! With `binlog_row_metadata=FULL` (MySQL ≥ 8.0.1, MariaDB ≥ 10.5) every table map carries
//! the column names, charsets and ENUM/SET members, and the decoder needs nothing else.
//! With `MINIMAL` (the default, and the only choice on older servers) a table map has only
//! the column count, the storage types and the null bitmap: which column is `name`, which
//! text column is latin1 and what ENUM index 3 means must come from elsewhere. Asking the
//! server (`information_schema`) gives today's schema, which is wrong for events written
//! before the last `ALTER TABLE`. So binlake keeps a history: the schemas read from
//! `information_schema` when capture starts ([`load_from_information_schema`]), then every
//! DDL statement of the binlog applied to them in binlog order ([`SchemaHistory::apply_ddl`]),
//! so each event is decoded with the schema of its time. [`SchemaHistory::to_json`] /
//! [`SchemaHistory::from_json`] persist it next to the resume position.
//!
//! The history tracks what decoding needs ([`TableSchema`]: columns in order with names,
//! types, charsets, ENUM/SET members, signedness, nullability, the primary key, and the
//! defaults binlake can reproduce exactly — NULL and literals of integer, VARCHAR/TEXT,
//! ENUM and SET columns, through `ALTER … SET/DROP DEFAULT` too — which fill the columns
//! an INSERT's `MINIMAL` row image leaves out), plus
//! the default character set of each table and database, because a later `ALTER TABLE …
//! ADD c VARCHAR(10)` takes its charset from there, and the table's UNIQUE keys: without a
//! declared primary key the server uses the first UNIQUE key whose columns are all NOT NULL
//! (no prefix or expression parts, not a MariaDB hash key on TEXT/BLOB) as primary key,
//! reports it as such in FULL table maps and in `COLUMN_KEY`, and so does the history, so
//! that a table has the same key whatever `binlog_row_metadata` is.
//!
//! # Parsing
//!
//! Statements are tokenized by [`sqlparser`] with its MySQL dialect (backtick identifiers,
//! `\` escapes, `/*!50100 … */` executable comments; MariaDB's `/*M!100100 … */` are
//! unwrapped here), and column definitions, data types, default and generation expressions,
//! `CHECK`/`REFERENCES` clauses and identifiers are parsed by sqlparser's parser. The
//! statement skeletons (`CREATE TABLE`, `ALTER TABLE` and its comma-separated
//! specifications, `RENAME TABLE`, `DROP`, `CREATE/ALTER DATABASE`) are read here on top of
//! that parser, because sqlparser 0.64 rejects many of the MySQL and MariaDB forms a binlog
//! contains: `PARTITION BY` after a table definition, `CONVERT TO CHARACTER SET`,
//! `ADD COLUMN (a …, b …)`, `ALTER TABLE t DEFAULT CHARSET=…`, `ALTER ONLINE|IGNORE TABLE`,
//! MariaDB's `IF [NOT] EXISTS` on specifications, `FORCE`, `DROP CHECK`, `ALTER TABLE t
//! RENAME t2`, `CHARSET x` on a column, `CHAR(n) BINARY`, `NATIONAL CHAR`, `LONG VARCHAR`.
//!
//! # Coverage
//!
//! - `CREATE [OR REPLACE] TABLE [IF NOT EXISTS]` with every MySQL/MariaDB column type,
//!   charsets and collations at column, table and database level, inline and table-level
//!   primary keys (in key order), generated and invisible columns (both are in the row
//!   image), and `CREATE TABLE … LIKE`.
//! - `ALTER TABLE`: `ADD [COLUMN]` (single, with `FIRST`/`AFTER`, or a parenthesised list),
//!   `DROP [COLUMN]`, `MODIFY`, `CHANGE`, `RENAME COLUMN`, `RENAME [TO|AS]`,
//!   `ADD/DROP PRIMARY KEY` (also as ``DROP INDEX `PRIMARY` ``), `CONVERT TO CHARACTER SET`
//!   (which also widens TEXT types as the server does), `[DEFAULT] CHARACTER SET`, MariaDB's
//!   `CONVERT PARTITION … TO TABLE` / `CONVERT TABLE … TO PARTITION`. Index, constraint,
//!   partition and table-option changes are recognised and leave the columns alone; any
//!   other specification is an error, never skipped.
//! - UNIQUE keys: `UNIQUE` in column and table definitions, `SERIAL`, `ADD UNIQUE`,
//!   `CREATE UNIQUE INDEX`, `DROP INDEX` (both forms), `RENAME INDEX`, and their columns
//!   dropped or renamed.
//! - `RENAME TABLE a TO b, c TO d` (applied in order, so swaps work), `DROP TABLE`,
//!   `CREATE/ALTER/DROP DATABASE`. `TRUNCATE`, non-unique indexes, temporary tables, views,
//!   routines, triggers, users and grants, and DML do not change table schemas and give no
//!   change.
//!
//! Not covered, each reported as an error naming the statement (the table concerned is
//! then unknown, so its events fail to decode with a clear message rather than being
//! decoded with a wrong schema): `CREATE TABLE … SELECT` without the column list (servers
//! writing row-based binlogs log the expanded definition instead), MariaDB system-versioned
//! tables (their implicit `row_start`/`row_end` columns), and types binlake cannot decode
//! (MySQL 9's `VECTOR`). MariaDB sequences are not tracked. Nullability is as declared
//! (the table map's null bitmap is what the decoder uses). `lower_case_table_names=1` is
//! honoured when set ([`SchemaHistory::set_lower_case_table_names`]; the loader reads it
//! from the server); otherwise names are case-sensitive, as on Linux, while column names
//! are compared case-insensitively, as the server does.
//!
//! A statement about a table the history does not know (e.g. one outside the captured
//! databases) leaves it unknown and is not an error; a `RENAME` onto a known name forgets
//! that name's old schema.

use std::collections::BTreeMap;

use binlake_core::schema::StringKind;
use binlake_core::{
    Column, ColumnDefault, ColumnType, Flavor, TableChange, TableChangeKind, TableSchema,
};
use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    BinaryLength, CharacterLength, ColumnOption, DataType, EnumMember, ExactNumberInfo, Expr,
    GeometricTypeKind, ObjectName, ObjectNamePart, TypeModifier,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::Error;

/// Character set used when neither the column, the table, the database nor the server
/// default is known.
const FALLBACK_CHARSET: &str = "utf8mb4";

static DIALECT: MySqlDialect = MySqlDialect {};

/// One table in the history: its schema, its default character set and its unique keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    schema: TableSchema,
    /// The table's default charset (`DEFAULT CHARSET=`), used by later `ADD`/`MODIFY`
    /// without a charset. `None` when unknown (schemas given to [`SchemaHistory::insert`]).
    charset: Option<String>,
    /// UNIQUE keys other than the primary key, in the server's key order.
    #[serde(default)]
    unique_keys: Vec<UniqueKey>,
    /// True when `schema.primary_key` is not a declared PRIMARY KEY but the first UNIQUE
    /// key whose columns are all NOT NULL, which the server then uses as the primary key
    /// (and reports as such in table maps and `COLUMN_KEY`).
    #[serde(default)]
    implicit_primary_key: bool,
}

/// A UNIQUE key: the server promotes the first one that qualifies to primary key when the
/// table has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UniqueKey {
    name: String,
    columns: Vec<String>,
    /// Has a prefix (`a(10)`) or an expression part: never a primary key.
    partial: bool,
}

/// Schemas of tables over time, kept up to date by DDL. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaHistory {
    flavor: Flavor,
    tables: BTreeMap<(String, String), Entry>,
    /// Default charset per database, when known (`CREATE DATABASE … CHARACTER SET`, or
    /// `information_schema.SCHEMATA`).
    databases: BTreeMap<String, String>,
    /// `@@character_set_server`, the default of databases created without a charset.
    server_charset: Option<String>,
    lower_case_table_names: bool,
    /// The tables whose existing rows the last statement applied changed, and those it
    /// renamed another table to (see `TableChange`); set by each `apply_ddl`.
    rewritten: Vec<(String, String)>,
    replaced: Vec<(String, String)>,
    /// Whether MariaDB's JSON columns carry the JSON marker: false for a history recorded
    /// by a binlake from before the marker (see [`SchemaHistory::adopt_json_markers`]).
    marks_json: bool,
}

impl Default for SchemaHistory {
    fn default() -> Self {
        Self::new()
    }
}

/// The persisted form ([`SchemaHistory::to_json`]).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    flavor: Flavor,
    server_charset: Option<String>,
    lower_case_table_names: bool,
    databases: BTreeMap<String, String>,
    tables: Vec<Entry>,
    /// Absent (false) in histories recorded before MariaDB's JSON marker existed.
    #[serde(default)]
    marks_json: bool,
}

const SNAPSHOT_VERSION: u32 = 1;

impl SchemaHistory {
    /// An empty history for a MySQL server.
    pub fn new() -> Self {
        Self::with_flavor(Flavor::Mysql)
    }

    /// An empty history for a server of `flavor`. The flavour decides what `JSON` in a
    /// column definition means: MySQL's binary JSON, or on MariaDB an alias of
    /// `LONGTEXT CHARACTER SET utf8mb4`.
    pub fn with_flavor(flavor: Flavor) -> Self {
        SchemaHistory {
            flavor,
            tables: BTreeMap::new(),
            databases: BTreeMap::new(),
            server_charset: None,
            lower_case_table_names: false,
            rewritten: Vec::new(),
            replaced: Vec::new(),
            marks_json: true,
        }
    }

    /// Sets the server's default character set (`@@character_set_server`), used for
    /// databases whose default charset is not known. Without it, `utf8mb4` is assumed.
    pub fn set_server_charset(&mut self, charset: &str) {
        self.server_charset = Some(normalize_charset(charset));
    }

    /// Sets the default character set of database `db`.
    pub fn set_database_charset(&mut self, db: &str, charset: &str) {
        let db = self.fold(db);
        self.databases.insert(db, normalize_charset(charset));
    }

    /// Whether the server runs with `lower_case_table_names=1`: table and database names
    /// are then stored in lower case and compared that way, as the server does. Set it
    /// before inserting schemas.
    pub fn set_lower_case_table_names(&mut self, on: bool) {
        self.lower_case_table_names = on;
    }

    /// Adds or replaces the schema of `schema.database`.`schema.table`. Its default
    /// character set is unknown: later DDL adding text columns without a charset takes the
    /// database's.
    pub fn insert(&mut self, schema: TableSchema) {
        self.insert_with_charset(schema, None);
    }

    /// Adds or replaces a schema together with the table's default character set.
    pub fn insert_with_charset(&mut self, mut schema: TableSchema, charset: Option<&str>) {
        schema.database = self.fold(&schema.database);
        schema.table = self.fold(&schema.table);
        let key = (schema.database.clone(), schema.table.clone());
        self.tables.insert(
            key,
            Entry {
                schema,
                charset: charset.map(normalize_charset),
                unique_keys: Vec::new(),
                implicit_primary_key: false,
            },
        );
    }

    /// The schema of `db`.`table`, if known.
    pub fn get(&self, db: &str, table: &str) -> Option<&TableSchema> {
        self.tables.get(&self.key(db, table)).map(|e| &e.schema)
    }

    /// All known schemas, ordered by database and table.
    pub fn schemas(&self) -> impl Iterator<Item = &TableSchema> {
        self.tables.values().map(|e| &e.schema)
    }

    /// Number of known tables.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// True when no table is known.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Applies a script of statements separated by `;` (a `mysqldump --no-data` file, a
    /// file of `CREATE TABLE` statements), starting with default database `default_db`;
    /// `USE db` changes it. Comments (also MySQL's `/*!… */`) and statements that do not
    /// define tables are passed over. The first statement that cannot be applied is an
    /// error naming its line.
    pub fn apply_script(&mut self, default_db: &str, sql: &str) -> Result<(), String> {
        let tokens = Tokenizer::new(&MySqlDialect {}, sql)
            .tokenize_with_location()
            .map_err(|e| format!("cannot read the SQL: {e}"))?;
        let mut db = default_db.to_string();
        let mut stmt = String::new();
        let mut line = 0;
        let mut flush = |stmt: &mut String, line: u64, db: &mut String| -> Result<(), String> {
            let text = stmt.trim();
            if !text.is_empty() {
                let mut words = text.split_whitespace();
                if words.next().is_some_and(|w| w.eq_ignore_ascii_case("USE"))
                    && let Some(name) = words.next()
                {
                    *db = name.trim_matches('`').to_string();
                } else {
                    self.apply_ddl(db, text)
                        .map_err(|e| format!("line {line}: {e}"))?;
                }
            }
            stmt.clear();
            Ok(())
        };
        for t in tokens {
            match &t.token {
                Token::SemiColon => flush(&mut stmt, line, &mut db)?,
                // Comments go; MySQL's executable comments too (version-gated settings).
                Token::Whitespace(
                    Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
                ) => stmt.push(' '),
                other => {
                    if stmt.trim().is_empty() && !matches!(other, Token::Whitespace(_)) {
                        line = t.span.start.line;
                    }
                    stmt.push_str(&other.to_string());
                }
            }
        }
        flush(&mut stmt, line, &mut db)
    }

    /// Applies one statement run with default database `default_db`. Returns the tables
    /// whose schema changed (or were dropped). Statements that do not touch table schemas
    /// (DML, GRANT, CREATE USER, …) are `Ok(vec![])`. A DDL it cannot parse or apply is an
    /// `Err` naming the statement and the reason; the tables it concerns are then forgotten
    /// (unknown) rather than kept with a schema that may be wrong.
    pub fn apply_ddl(
        &mut self,
        default_db: &str,
        ddl: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let mut touched = Vec::new();
        self.rewritten.clear();
        self.replaced.clear();
        let result =
            parse_statement(ddl, &mut touched).and_then(|stmt| self.apply(default_db, stmt));
        result.map_err(|reason| {
            let mut forgotten = Vec::new();
            for name in touched {
                let key = self.resolve(default_db, &name);
                if self.tables.remove(&key).is_some() {
                    forgotten.push(format!("{}.{}", key.0, key.1));
                }
            }
            let shown = shorten(ddl);
            if forgotten.is_empty() {
                format!("cannot apply DDL `{shown}`: {reason}")
            } else {
                format!(
                    "cannot apply DDL `{shown}`: {reason}; the schema of {} is now unknown",
                    forgotten.join(", ")
                )
            }
        })
    }

    /// Whether MariaDB's JSON columns carry the JSON marker in this history. False for one
    /// recorded by a binlake from before the marker: its JSON columns read as LONGTEXT
    /// until [`adopt_json_markers`](Self::adopt_json_markers).
    pub fn marks_json(&self) -> bool {
        self.marks_json
    }

    /// Marks, in a history recorded before the JSON marker existed, the LONGTEXT columns
    /// that `today` (loaded from `information_schema`) marks as JSON: same table, same
    /// column name, LONGTEXT in both. Columns are never unmarked (the binlog's DDL does
    /// that from then on). Returns how many columns it marked; the history marks JSON from
    /// then on.
    pub fn adopt_json_markers(&mut self, today: &SchemaHistory) -> usize {
        let mut marked = 0;
        for (key, entry) in &mut self.tables {
            let Some(now) = today.tables.get(key) else {
                continue;
            };
            for c in &mut entry.schema.columns {
                let json_today = now.schema.columns.iter().any(|n| {
                    same_name(&n.name, &c.name)
                        && matches!(
                            n.ty,
                            ColumnType::String {
                                kind: StringKind::Long,
                                json: true,
                                ..
                            }
                        )
                });
                if let ColumnType::String {
                    kind: StringKind::Long,
                    json: json @ false,
                    ..
                } = &mut c.ty
                    && json_today
                {
                    *json = true;
                    marked += 1;
                }
            }
        }
        self.marks_json = true;
        marked
    }

    /// A JSON snapshot of the whole history, for persistence.
    pub fn to_json(&self) -> String {
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            flavor: self.flavor,
            server_charset: self.server_charset.clone(),
            lower_case_table_names: self.lower_case_table_names,
            databases: self.databases.clone(),
            tables: self.tables.values().cloned().collect(),
            marks_json: self.marks_json,
        };
        // Plain data with string keys only: serialization cannot fail.
        serde_json::to_string(&snapshot).expect("a schema history serializes to JSON")
    }

    /// The history saved by [`to_json`](Self::to_json).
    pub fn from_json(s: &str) -> Result<Self, String> {
        let snapshot: Snapshot =
            serde_json::from_str(s).map_err(|e| format!("invalid schema history snapshot: {e}"))?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!(
                "schema history snapshot version {} is not supported (expected {SNAPSHOT_VERSION})",
                snapshot.version
            ));
        }
        let mut history = SchemaHistory::with_flavor(snapshot.flavor);
        history.server_charset = snapshot.server_charset;
        history.lower_case_table_names = snapshot.lower_case_table_names;
        history.databases = snapshot.databases;
        history.marks_json = snapshot.marks_json;
        for entry in snapshot.tables {
            let key = (entry.schema.database.clone(), entry.schema.table.clone());
            history.tables.insert(key, entry);
        }
        Ok(history)
    }

    fn fold(&self, name: &str) -> String {
        if self.lower_case_table_names {
            name.to_lowercase()
        } else {
            name.to_string()
        }
    }

    fn key(&self, db: &str, table: &str) -> (String, String) {
        (self.fold(db), self.fold(table))
    }

    fn resolve(&self, default_db: &str, name: &Name) -> (String, String) {
        self.key(name.db.as_deref().unwrap_or(default_db), &name.table)
    }

    fn database_charset(&self, db: &str) -> String {
        self.databases
            .get(db)
            .or(self.server_charset.as_ref())
            .cloned()
            .unwrap_or_else(|| FALLBACK_CHARSET.to_string())
    }

    fn table_charset(&self, key: &(String, String)) -> String {
        self.tables
            .get(key)
            .and_then(|e| e.charset.clone())
            .unwrap_or_else(|| self.database_charset(&key.0))
    }

    fn apply(
        &mut self,
        default_db: &str,
        stmt: Statement,
    ) -> Result<Vec<(String, String)>, String> {
        match stmt {
            Statement::Other => Ok(vec![]),
            Statement::CreateTable {
                name,
                if_not_exists,
                body,
            } => {
                let key = self.resolve(default_db, &name);
                if if_not_exists && self.tables.contains_key(&key) {
                    return Ok(vec![]);
                }
                let entry = match body {
                    CreateBody::Like(source) => {
                        let source = self.resolve(default_db, &source);
                        match self.tables.get(&source) {
                            Some(e) => {
                                let mut e = e.clone();
                                e.schema.database = key.0.clone();
                                e.schema.table = key.1.clone();
                                e
                            }
                            None => {
                                // The copy of an unknown table is unknown.
                                return Ok(self
                                    .tables
                                    .remove(&key)
                                    .map(|_| vec![key])
                                    .unwrap_or_default());
                            }
                        }
                    }
                    CreateBody::Columns { elements, charset } => {
                        let charset = charset.unwrap_or_else(|| self.database_charset(&key.0));
                        let mut work = Work {
                            columns: Vec::new(),
                            primary_key: Vec::new(),
                            unique_keys: Vec::new(),
                            charset,
                            flavor: self.flavor,
                            rewrites: false,
                        };
                        let fail = |e: String| format!("{}.{}: {e}", key.0, key.1);
                        // Keys may name columns defined after them.
                        let mut keys = Vec::new();
                        for element in elements {
                            match element {
                                Element::Column(def) => {
                                    work.add(def, &Position::Last, false).map_err(fail)?
                                }
                                Element::Key(key) => keys.push(key),
                            }
                        }
                        for key in keys {
                            work.add_key(key, false).map_err(fail)?;
                        }
                        work.into_entry(&key).map_err(fail)?
                    }
                };
                // CREATE OR REPLACE of an existing table: the name holds a new table. IF NOT
                // EXISTS of a name the history does not know (e.g. forgotten after a DDL it
                // could not parse) may leave an existing table with rows: read it again.
                if self.tables.insert(key.clone(), entry).is_some() || if_not_exists {
                    self.replaced.push(key.clone());
                }
                Ok(vec![key])
            }
            Statement::AlterTable { name, specs } => self.alter_table(default_db, &name, specs),
            Statement::RenameTables(pairs) => {
                let mut changed = Vec::new();
                for (from, to) in pairs {
                    let from = self.resolve(default_db, &from);
                    let to = self.resolve(default_db, &to);
                    changed.extend(self.rename(&from, &to));
                }
                Ok(changed)
            }
            Statement::DropTables(names) => {
                let mut dropped = Vec::new();
                for name in &names {
                    let key = self.resolve(default_db, name);
                    if self.tables.remove(&key).is_some() {
                        dropped.push(key);
                    }
                }
                Ok(dropped)
            }
            Statement::CreateDatabase {
                name,
                if_not_exists,
                charset,
            } => {
                let db = self.fold(&name);
                let exists =
                    self.databases.contains_key(&db) || self.tables.keys().any(|(d, _)| *d == db);
                if !(if_not_exists && exists) {
                    match charset {
                        Some(cs) => {
                            self.databases.insert(db, cs);
                        }
                        None => {
                            self.databases.remove(&db);
                        }
                    }
                }
                Ok(vec![])
            }
            Statement::AlterDatabase { name, charset } => {
                let db = self.fold(name.as_deref().unwrap_or(default_db));
                if let Some(cs) = charset {
                    self.databases.insert(db, cs);
                }
                Ok(vec![])
            }
            Statement::DropDatabase(name) => {
                let db = self.fold(&name);
                self.databases.remove(&db);
                let dropped: Vec<_> = self
                    .tables
                    .keys()
                    .filter(|(d, _)| *d == db)
                    .cloned()
                    .collect();
                for key in &dropped {
                    self.tables.remove(key);
                }
                Ok(dropped)
            }
        }
    }

    /// Moves `from` to `to`; returns the names whose schema changed.
    fn rename(&mut self, from: &(String, String), to: &(String, String)) -> Vec<(String, String)> {
        let mut changed = Vec::new();
        match self.tables.remove(from) {
            Some(mut entry) => {
                entry.schema.database = to.0.clone();
                entry.schema.table = to.1.clone();
                self.tables.insert(to.clone(), entry);
                self.replaced.push(to.clone());
                changed.push(from.clone());
                changed.push(to.clone());
            }
            None => {
                // An unknown table takes the new name: whatever was known there is stale.
                if self.tables.remove(to).is_some() {
                    changed.push(to.clone());
                }
            }
        }
        changed
    }

    fn alter_table(
        &mut self,
        default_db: &str,
        name: &Name,
        specs: Vec<Spec>,
    ) -> Result<Vec<(String, String)>, String> {
        let key = self.resolve(default_db, name);
        let Some(entry) = self.tables.get(&key) else {
            // Unknown table: it stays unknown, under its new name if renamed.
            let mut changed = Vec::new();
            for spec in specs {
                match spec {
                    Spec::Rename(to) => {
                        let to = self.resolve(default_db, &to);
                        changed.extend(self.rename(&key, &to));
                    }
                    Spec::ConvertPartitionToTable(to) => {
                        let to = self.resolve(default_db, &to);
                        if self.tables.remove(&to).is_some() {
                            changed.push(to);
                        }
                    }
                    _ => {}
                }
            }
            return Ok(changed);
        };
        let primary_key = if entry.implicit_primary_key {
            Vec::new()
        } else {
            entry.schema.key_columns().map(|c| c.name.clone()).collect()
        };
        let mut work = Work {
            columns: entry.schema.columns.clone(),
            primary_key,
            unique_keys: entry.unique_keys.clone(),
            charset: self.table_charset(&key),
            flavor: self.flavor,
            rewrites: false,
        };
        let mut new_key = key.clone();
        let mut copies = Vec::new();
        let mut absorbed = Vec::new();
        let qualified = format!("{}.{}", key.0, key.1);
        let fail = |e: String| format!("{qualified}: {e}");
        for spec in specs {
            match spec {
                Spec::Add(defs) => {
                    for (def, pos, if_not_exists) in defs {
                        work.add(def, &pos, if_not_exists).map_err(fail)?;
                    }
                }
                Spec::Drop { column, if_exists } => {
                    work.drop_column(&column, if_exists).map_err(fail)?
                }
                Spec::Change {
                    old,
                    def,
                    pos,
                    if_exists,
                } => work.change(&old, def, &pos, if_exists).map_err(fail)?,
                Spec::RenameColumn { old, new } => work.rename_column(&old, &new).map_err(fail)?,
                Spec::SetDefault { column, default } => {
                    work.set_default(&column, default).map_err(fail)?
                }
                Spec::AddKey { key, if_not_exists } => {
                    work.add_key(key, if_not_exists).map_err(fail)?
                }
                Spec::DropPrimaryKey => work.primary_key.clear(),
                Spec::DropIndex { name, if_exists } => {
                    work.drop_index(&name, if_exists).map_err(fail)?
                }
                Spec::RenameIndex { old, new } => work.rename_index(&old, &new),
                Spec::Convert(charset) => {
                    let charset = charset.unwrap_or_else(|| self.database_charset(&key.0));
                    work.convert(&charset);
                }
                Spec::DefaultCharset(charset) => {
                    work.charset = charset.unwrap_or_else(|| self.database_charset(&key.0));
                }
                Spec::Rename(to) => new_key = self.resolve(default_db, &to),
                Spec::ConvertPartitionToTable(to) => copies.push(self.resolve(default_db, &to)),
                Spec::ConvertTableToPartition(from) => {
                    absorbed.push(self.resolve(default_db, &from))
                }
            }
        }
        if work.rewrites {
            self.rewritten.push(new_key.clone());
        }
        if new_key != key {
            self.replaced.push(new_key.clone());
        }
        let entry = work.into_entry(&new_key).map_err(fail)?;
        // Another key identifies the rows differently: what consumers keyed by the old one
        // cannot be updated in place (a replica would keep each row under both keys), so
        // the table is replaced: truncated at the statement and read again.
        let key_names = |s: &TableSchema| -> Vec<String> {
            s.key_columns().map(|c| c.name.to_lowercase()).collect()
        };
        if self
            .tables
            .get(&key)
            .is_some_and(|old| key_names(&old.schema) != key_names(&entry.schema))
            && !self.replaced.contains(&new_key)
        {
            self.replaced.push(new_key.clone());
        }
        let mut changed = Vec::new();
        if new_key != key {
            self.tables.remove(&key);
            changed.push(key.clone());
        }
        for from in absorbed {
            if self.tables.remove(&from).is_some() {
                changed.push(from);
            }
        }
        for to in copies {
            let mut copy = entry.clone();
            copy.schema.database = to.0.clone();
            copy.schema.table = to.1.clone();
            self.tables.insert(to.clone(), copy);
            changed.push(to);
        }
        let same = new_key == key
            && self
                .tables
                .get(&key)
                .is_some_and(|old| old.schema == entry.schema);
        self.tables.insert(new_key.clone(), entry);
        if !same {
            changed.push(new_key);
        }
        Ok(changed)
    }
}

impl crate::binlog::SchemaLookup for SchemaHistory {
    fn lookup(&mut self, database: &str, table: &str) -> Option<TableSchema> {
        self.get(database, table).cloned()
    }

    fn snapshot(&self) -> Option<String> {
        Some(self.to_json())
    }

    fn apply_ddl(&mut self, default_db: &str, ddl: &str) -> Vec<TableChange> {
        // DDL is rare: a copy of the known names tells created tables from altered ones.
        let before: std::collections::HashSet<(String, String)> =
            self.tables.keys().cloned().collect();
        let mut seen = std::collections::HashSet::new();
        match SchemaHistory::apply_ddl(self, default_db, ddl) {
            Ok(changed) => changed
                .into_iter()
                // A name can change twice in one statement (`RENAME TABLE t TO t_old,
                // t_new TO t`): one change, with its final schema.
                .filter(|key| seen.insert(key.clone()))
                .map(|(db, table)| {
                    tracing::debug!(table = %format!("{db}.{table}"), "schema history updated");
                    let key = (db, table);
                    let entry = self.tables.get(&key);
                    let kind = match entry {
                        None => TableChangeKind::Drop,
                        Some(_) if before.contains(&key) => TableChangeKind::Alter,
                        Some(_) => TableChangeKind::Create,
                    };
                    TableChange {
                        kind,
                        schema: entry.map(|e| std::sync::Arc::new(e.schema.clone())),
                        charset: entry.map(|_| self.table_charset(&key)),
                        rewrites_rows: entry.is_some()
                            && (self.rewritten.contains(&key) || self.replaced.contains(&key)),
                        replaced: entry.is_some() && self.replaced.contains(&key),
                        database: key.0,
                        table: key.1,
                    }
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "schema history: DDL not applied");
                Vec::new()
            }
        }
    }
}

/// A table being altered: columns, the declared primary key and the unique keys by column
/// name, and the default charset for new text columns.
struct Work {
    columns: Vec<Column>,
    primary_key: Vec<String>,
    unique_keys: Vec<UniqueKey>,
    charset: String,
    flavor: Flavor,
    /// A change so far gives existing rows new values (see `TableChange::rewrites_rows`).
    rewrites: bool,
}

impl Work {
    fn find(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| same_name(&c.name, name))
    }

    fn column(&self, def: &ColumnDef) -> Result<Column, String> {
        let charset = def.charset(&self.charset);
        let mut ty = def
            .ty
            .resolve(Some(&charset), self.flavor)
            .map_err(|e| format!("column {}: {e}", def.name))?;
        if self.flavor == Flavor::MariaDb {
            // JSON gets `CHECK (json_valid(c))` unless the definition has a CHECK of its
            // own, which replaces it; a LONGTEXT with that check is what JSON declares.
            let declared_json = matches!(def.ty.declared, Declared::Json);
            let json = match def.check {
                ColumnCheck::JsonValid => true,
                ColumnCheck::None => declared_json,
                ColumnCheck::Other => false,
            };
            set_json_marker(&mut ty, json);
        }
        let nullable = def.nullable();
        let default = match (&def.default, def.generated) {
            (_, true) => ColumnDefault::Unknown,
            (Some(d), false) => d.clone(),
            // No DEFAULT clause: NULL when NULL is allowed; a NOT NULL column's implicit
            // default (0, '') only non-strict servers use.
            (None, false) if nullable => ColumnDefault::Null,
            (None, false) => ColumnDefault::Unknown,
        };
        let default = known_default(&ty, nullable, default);
        Ok(Column::new(def.name.clone(), ty, nullable).with_default(default))
    }

    fn insert_at(&mut self, column: Column, pos: &Position, default: usize) -> Result<(), String> {
        let at = match pos {
            Position::Last => default,
            Position::First => 0,
            Position::After(name) => {
                self.find(name)
                    .ok_or_else(|| format!("AFTER {name}: no such column"))?
                    + 1
            }
        };
        self.columns.insert(at.min(self.columns.len()), column);
        Ok(())
    }

    fn add(&mut self, def: ColumnDef, pos: &Position, if_not_exists: bool) -> Result<(), String> {
        if self.find(&def.name).is_some() {
            if if_not_exists {
                return Ok(());
            }
            return Err(format!("column {} is defined twice", def.name));
        }
        let column = self.column(&def)?;
        self.rewrites |= def.fills;
        self.insert_at(column, pos, self.columns.len())?;
        self.column_keys(&def);
        Ok(())
    }

    /// Keys declared in a column definition: `PRIMARY KEY`, `UNIQUE`, `SERIAL`.
    fn column_keys(&mut self, def: &ColumnDef) {
        if def.primary {
            self.primary_key = vec![def.name.clone()];
        }
        if def.unique {
            self.add_unique(None, vec![def.name.clone()], false);
        }
    }

    fn add_unique(&mut self, name: Option<String>, columns: Vec<String>, partial: bool) {
        // Unnamed keys are named after their first column, with _2, _3 … when taken.
        let base = name.unwrap_or_else(|| columns.first().cloned().unwrap_or_else(|| "key".into()));
        let mut name = base.clone();
        let mut n = 2;
        while self.unique_keys.iter().any(|k| same_name(&k.name, &name)) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.unique_keys.push(UniqueKey {
            name,
            columns,
            partial,
        });
    }

    fn add_key(&mut self, key: KeyDef, if_not_exists: bool) -> Result<(), String> {
        match key {
            KeyDef::Primary(cols) => self.set_primary_key(cols),
            KeyDef::Unique {
                name,
                columns,
                partial,
            } => {
                for c in &columns {
                    if self.find(c).is_none() {
                        return Err(format!("UNIQUE key on unknown column {c}"));
                    }
                }
                let exists = name
                    .as_ref()
                    .is_some_and(|n| self.unique_keys.iter().any(|k| same_name(&k.name, n)));
                if !(exists && if_not_exists) {
                    self.add_unique(name, columns, partial);
                }
                Ok(())
            }
            KeyDef::Other => Ok(()),
        }
    }

    fn drop_index(&mut self, name: &str, if_exists: bool) -> Result<(), String> {
        if name.eq_ignore_ascii_case("PRIMARY") {
            if self.primary_key.is_empty() && !if_exists {
                return Err("DROP PRIMARY KEY: the table has no primary key".into());
            }
            self.primary_key.clear();
        } else {
            // Other indexes and constraints are not tracked: nothing to do.
            self.unique_keys.retain(|k| !same_name(&k.name, name));
        }
        Ok(())
    }

    fn rename_index(&mut self, old: &str, new: &str) {
        for k in &mut self.unique_keys {
            if same_name(&k.name, old) {
                k.name = new.to_string();
            }
        }
    }

    /// The key the server uses as primary key when none is declared: the first UNIQUE key
    /// whose columns are all NOT NULL, without prefix or expression parts, and not a
    /// MariaDB "long unique" (hash) key on TEXT/BLOB columns or over 3072 bytes.
    fn implicit_primary_key(&self) -> Option<Vec<String>> {
        self.unique_keys
            .iter()
            .find(|k| {
                let mut bytes = 0u64;
                !k.partial
                    && !k.columns.is_empty()
                    && k.columns.iter().all(|c| {
                        self.find(c).is_some_and(|i| {
                            let col = &self.columns[i];
                            bytes += key_bytes(&col.ty);
                            !col.nullable && !is_long_type(&col.ty)
                        })
                    })
                    && bytes <= 3072
            })
            .map(|k| k.columns.clone())
    }

    fn drop_column(&mut self, name: &str, if_exists: bool) -> Result<(), String> {
        match self.find(name) {
            Some(i) => {
                self.columns.remove(i);
                // The server removes a dropped column from the indexes that contain it, and
                // indexes left without columns.
                self.primary_key.retain(|k| !same_name(k, name));
                for k in &mut self.unique_keys {
                    k.columns.retain(|c| !same_name(c, name));
                }
                self.unique_keys.retain(|k| !k.columns.is_empty());
                Ok(())
            }
            None if if_exists => Ok(()),
            None => Err(format!("DROP {name}: no such column")),
        }
    }

    fn change(
        &mut self,
        old: &str,
        def: ColumnDef,
        pos: &Position,
        if_exists: bool,
    ) -> Result<(), String> {
        let Some(i) = self.find(old) else {
            if if_exists {
                return Ok(());
            }
            return Err(format!("no column {old} to change"));
        };
        if !same_name(old, &def.name) && self.find(&def.name).is_some() {
            return Err(format!(
                "CHANGE {old} {}: that column exists already",
                def.name
            ));
        }
        let column = self.column(&def)?;
        let was = self.columns.remove(i);
        // A narrower or other type converts the stored values; NOT NULL turns NULLs into
        // the type's default.
        self.rewrites |= !keeps_values(&was.ty, &column.ty) || (was.nullable && !column.nullable);
        self.insert_at(column, pos, i)?;
        self.rename_in_keys(old, &def.name);
        self.column_keys(&def);
        Ok(())
    }

    fn rename_in_keys(&mut self, old: &str, new: &str) {
        let keys = self
            .unique_keys
            .iter_mut()
            .flat_map(|k| k.columns.iter_mut())
            .chain(self.primary_key.iter_mut());
        for c in keys {
            if same_name(c, old) {
                *c = new.to_string();
            }
        }
    }

    fn set_default(&mut self, column: &str, default: Option<ColumnDefault>) -> Result<(), String> {
        let i = self
            .find(column)
            .ok_or_else(|| format!("ALTER COLUMN {column}: no such column"))?;
        let c = &mut self.columns[i];
        // Without a default, NULL for a nullable column (and nothing known otherwise).
        let default = default.unwrap_or(match c.nullable {
            true => ColumnDefault::Null,
            false => ColumnDefault::Unknown,
        });
        c.default = known_default(&c.ty, c.nullable, default);
        Ok(())
    }

    fn rename_column(&mut self, old: &str, new: &str) -> Result<(), String> {
        let i = self
            .find(old)
            .ok_or_else(|| format!("RENAME COLUMN {old}: no such column"))?;
        if !same_name(old, new) && self.find(new).is_some() {
            return Err(format!(
                "RENAME COLUMN {old} TO {new}: that column exists already"
            ));
        }
        self.columns[i].name = new.to_string();
        self.rename_in_keys(old, new);
        Ok(())
    }

    fn set_primary_key(&mut self, cols: Vec<String>) -> Result<(), String> {
        for c in &cols {
            if self.find(c).is_none() {
                return Err(format!("PRIMARY KEY: no column {c}"));
            }
        }
        self.primary_key = cols;
        Ok(())
    }

    /// `CONVERT TO CHARACTER SET`: every text column takes `charset`, TEXT types grown so
    /// that they hold as many characters as before (VARCHAR too long becomes MEDIUMTEXT or
    /// LONGTEXT), as the server does.
    fn convert(&mut self, charset: &str) {
        for c in &mut self.columns {
            let ColumnType::String {
                kind,
                length,
                charset: old,
                json,
            } = &c.ty
            else {
                continue;
            };
            let json = *json;
            let (mut kind, mut length) = (*kind, *length);
            let new_max = max_bytes_per_char(charset);
            match kind {
                StringKind::Char => {}
                StringKind::VarChar => {
                    let bytes = u64::from(length) * u64::from(new_max);
                    if bytes > 65_535 {
                        (kind, length) = text_kind_for_bytes(bytes);
                    }
                }
                StringKind::Tiny | StringKind::Text | StringKind::Medium => {
                    let chars = u64::from(length) / u64::from(max_bytes_per_char(old));
                    let (needed, needed_len) = text_kind_for_bytes(chars * u64::from(new_max));
                    if needed_len > length {
                        (kind, length) = (needed, needed_len);
                    }
                }
                StringKind::Long => {}
            }
            if let Ok(mut ty) =
                (Declared::Text { kind, length }).resolve(Some(charset), self.flavor)
            {
                // MariaDB converts JSON columns too; their check stays.
                set_json_marker(&mut ty, json);
                c.ty = ty;
            }
        }
        self.charset = charset.to_string();
    }

    fn into_entry(self, key: &(String, String)) -> Result<Entry, String> {
        let implicit = if self.primary_key.is_empty() {
            self.implicit_primary_key()
        } else {
            None
        };
        let implicit_primary_key = implicit.is_some();
        let declared = implicit.as_ref().unwrap_or(&self.primary_key);
        let mut columns = self.columns;
        let mut primary_key = Vec::with_capacity(declared.len());
        for name in declared {
            let i = columns
                .iter()
                .position(|c| same_name(&c.name, name))
                .ok_or_else(|| format!("primary key column {name} does not exist"))?;
            if !primary_key.contains(&i) {
                primary_key.push(i);
            }
            // Primary-key columns are NOT NULL, whatever the definition says (so NULL is
            // no default of theirs).
            columns[i].nullable = false;
            if columns[i].default == ColumnDefault::Null {
                columns[i].default = ColumnDefault::Unknown;
            }
        }
        Ok(Entry {
            schema: TableSchema {
                database: key.0.clone(),
                table: key.1.clone(),
                columns,
                primary_key,
            },
            charset: Some(self.charset),
            unique_keys: self.unique_keys,
            implicit_primary_key,
        })
    }
}

/// Marks (or unmarks) a LONGTEXT column as MariaDB's JSON; other types stay as they are.
fn set_json_marker(ty: &mut ColumnType, on: bool) {
    if let ColumnType::String {
        kind: StringKind::Long,
        json,
        ..
    } = ty
    {
        *json = on;
    }
}

/// The column `c` when `expr` is `json_valid(c)`, the check MariaDB gives a JSON column.
fn json_valid_column(expr: &Expr) -> Option<&str> {
    use sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let Expr::Function(f) = expr else {
        return None;
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if !object_name_text(&f.name).eq_ignore_ascii_case("json_valid")
        || list.duplicate_treatment.is_some()
        || !list.clauses.is_empty()
    {
        return None;
    }
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(id)))] => Some(&id.value),
        _ => None,
    }
}

/// The column `c` when `clause`, a `CHECK_CLAUSE` of `information_schema.CHECK_CONSTRAINTS`,
/// is `json_valid(c)`.
fn json_valid_clause_column(clause: &str) -> Option<String> {
    let mut parser = Parser::new(&DIALECT).try_with_sql(clause).ok()?;
    let expr = parser.parse_expr().ok()?;
    if parser.peek_token().token != Token::EOF {
        return None;
    }
    json_valid_column(&expr).map(str::to_string)
}

/// The column-level CHECK clause of a definition, as far as JSON is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnCheck {
    /// No CHECK.
    None,
    /// `CHECK (json_valid(column))`.
    JsonValid,
    /// Any other CHECK.
    Other,
}

/// TEXT, BLOB, JSON and spatial columns: a UNIQUE key on them is a MariaDB "long unique"
/// (hash) key, which the server never uses as primary key.
fn is_long_type(ty: &ColumnType) -> bool {
    match ty {
        ColumnType::String { kind, .. } | ColumnType::Bytes { kind, .. } => {
            !matches!(kind, StringKind::Char | StringKind::VarChar)
        }
        ColumnType::Json | ColumnType::Geometry { .. } => true,
        _ => false,
    }
}

/// Bytes a column takes in an index key (strings: their maximum byte length).
fn key_bytes(ty: &ColumnType) -> u64 {
    match ty {
        ColumnType::String {
            length, charset, ..
        } => u64::from(*length) * u64::from(max_bytes_per_char(charset)),
        ColumnType::Bytes { length, .. } => u64::from(*length),
        _ => 8,
    }
}

/// Column names are case-insensitive in MySQL and MariaDB.
fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// At most 200 characters of a statement, for error messages.
fn shorten(sql: &str) -> String {
    let sql = sql.trim();
    match sql.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &sql[..i]),
        None => sql.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Types.

/// A column type as declared, before its character set is known.
#[derive(Debug, Clone, PartialEq)]
enum Declared {
    /// Types without a character set.
    Plain(ColumnType),
    /// CHAR/VARCHAR (length in characters) or a TEXT type (length in bytes); binary
    /// strings when the charset is `binary`.
    Text { kind: StringKind, length: u32 },
    /// `TEXT(n)`: the smallest TEXT type that holds `n` characters.
    TextChars(u64),
    /// BINARY/VARBINARY/BLOB types.
    Binary { kind: StringKind, length: u32 },
    /// JSON: MySQL's binary JSON, MariaDB's LONGTEXT alias.
    Json,
}

/// A declared type and what the type itself implies.
#[derive(Debug, Clone, PartialEq)]
struct TypeDecl {
    declared: Declared,
    /// `NATIONAL CHAR`, `NCHAR`, `NVARCHAR`: utf8mb3 unless a charset is given.
    national: bool,
    /// `SERIAL` is `BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE`.
    serial: bool,
}

impl TypeDecl {
    fn resolve(&self, charset: Option<&str>, flavor: Flavor) -> Result<ColumnType, String> {
        let charset = if self.national {
            Some("utf8mb3")
        } else {
            charset
        };
        self.declared.resolve(charset, flavor)
    }
}

impl Declared {
    fn resolve(&self, charset: Option<&str>, flavor: Flavor) -> Result<ColumnType, String> {
        let text = |kind: StringKind, length: u32| -> Result<ColumnType, String> {
            match charset {
                Some("binary") => Ok(ColumnType::Bytes { kind, length }),
                Some(cs) => Ok(ColumnType::String {
                    kind,
                    length,
                    charset: cs.to_string(),
                    json: false,
                }),
                None => Err(format!(
                    "a text type ({}) needs a character set",
                    kind_name(kind)
                )),
            }
        };
        match self {
            Declared::Plain(ty) => Ok(ty.clone()),
            Declared::Text { kind, length } => text(*kind, *length),
            Declared::TextChars(chars) => {
                let bytes = chars * u64::from(max_bytes_per_char(charset.unwrap_or("binary")));
                let (kind, length) = text_kind_for_bytes(bytes.max(1));
                text(kind, length)
            }
            Declared::Binary { kind, length } => Ok(ColumnType::Bytes {
                kind: *kind,
                length: *length,
            }),
            Declared::Json => Ok(match flavor {
                Flavor::Mysql => ColumnType::Json,
                Flavor::MariaDb => ColumnType::String {
                    kind: StringKind::Long,
                    length: u32::MAX,
                    charset: "utf8mb4".into(),
                    json: true,
                },
            }),
        }
    }
}

fn kind_name(kind: StringKind) -> &'static str {
    match kind {
        StringKind::Char => "CHAR",
        StringKind::VarChar => "VARCHAR",
        StringKind::Tiny => "TINYTEXT",
        StringKind::Text => "TEXT",
        StringKind::Medium => "MEDIUMTEXT",
        StringKind::Long => "LONGTEXT",
    }
}

/// The smallest TEXT/BLOB type holding `bytes`, and its maximum length in bytes.
fn text_kind_for_bytes(bytes: u64) -> (StringKind, u32) {
    match bytes {
        0..=255 => (StringKind::Tiny, 255),
        256..=65_535 => (StringKind::Text, 65_535),
        65_536..=16_777_215 => (StringKind::Medium, 16_777_215),
        _ => (StringKind::Long, u32::MAX),
    }
}

/// The longest character of a charset in bytes.
fn max_bytes_per_char(charset: &str) -> u32 {
    match charset {
        "utf8mb4" | "utf16" | "utf16le" | "utf32" | "gb18030" => 4,
        "utf8mb3" | "utf8" | "ujis" | "eucjpms" => 3,
        "ucs2" | "gbk" | "gb2312" | "big5" | "sjis" | "cp932" | "euckr" => 2,
        _ => 1,
    }
}

/// Lower case, and `utf8` spelled `utf8mb3` (what it means on every supported server and
/// what MySQL 8 and MariaDB 10.6+ report).
fn normalize_charset(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name == "utf8" {
        "utf8mb3".into()
    } else {
        name
    }
}

/// The character set a collation belongs to (`latin1_swedish_ci` → `latin1`), or `None`
/// for MariaDB's charset-less names (`uca1400_ai_ci`).
fn charset_of_collation(collation: &str) -> Option<String> {
    let collation = collation.to_ascii_lowercase();
    let prefix = collation.split('_').next().unwrap_or_default();
    if prefix.is_empty() || prefix.starts_with("uca") {
        None
    } else {
        Some(normalize_charset(prefix))
    }
}

/// Parses a MySQL column type as written in DDL or in
/// `information_schema.COLUMNS.COLUMN_TYPE` (e.g. `decimal(10,2) unsigned`,
/// `enum('a','b''c')`, `varchar(20)`, `bit(5)`, `datetime(6)`, `int(11) unsigned zerofill`,
/// `tinyint(1)`, `json`, `point`) with the column's character set (`None` for binary and
/// non-text types; `binary` makes a text type a binary string) into a [`ColumnType`].
/// `json` is MySQL's JSON type (MariaDB reports its JSON columns as `longtext`).
pub fn parse_column_type(column_type: &str, charset: Option<&str>) -> Result<ColumnType, String> {
    let fail = |e: String| format!("column type `{column_type}`: {e}");
    let mut sql = Sql::new(column_type).map_err(fail)?;
    let decl = sql.data_type().map_err(fail)?;
    if !sql.at_end() {
        return Err(fail(sql.unexpected("after the type")));
    }
    let charset = charset.map(normalize_charset);
    decl.resolve(charset.as_deref(), Flavor::Mysql)
        .map_err(fail)
}

fn length_u32(n: u64, what: &str) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{what} length {n} is too large"))
}

fn char_length(len: &Option<CharacterLength>, default: Option<u64>) -> Result<u32, String> {
    match len {
        Some(CharacterLength::IntegerLength { length, .. }) => length_u32(*length, "character"),
        Some(CharacterLength::Max) => Err("length MAX is not MySQL".into()),
        None => default
            .map(|d| length_u32(d, "character"))
            .unwrap_or_else(|| Err("a length is required".into())),
    }
}

fn decimal(info: &ExactNumberInfo) -> Result<ColumnType, String> {
    let (precision, scale) = match info {
        ExactNumberInfo::None => (10, 0),
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (
            *p,
            u64::try_from(*s).map_err(|_| format!("negative scale {s}"))?,
        ),
    };
    if !(1..=65).contains(&precision) || scale > 30 || scale > precision {
        return Err(format!("DECIMAL({precision},{scale}) is out of range"));
    }
    Ok(ColumnType::Decimal {
        precision: precision as u8,
        scale: scale as u8,
    })
}

fn fsp(f: &Option<u64>) -> Result<u8, String> {
    match f.unwrap_or(0) {
        f @ 0..=6 => Ok(f as u8),
        f => Err(format!(
            "fractional-seconds precision {f} is out of range (0–6)"
        )),
    }
}

/// sqlparser's [`DataType`] to a declared MySQL type. `unsigned` is a trailing
/// `UNSIGNED`/`ZEROFILL` that sqlparser left unparsed.
fn map_data_type(dt: &DataType, unsigned: bool) -> Result<TypeDecl, String> {
    use DataType as D;
    let plain = |ty: ColumnType| Declared::Plain(ty);
    let int = |bits: u8, u: bool| {
        plain(ColumnType::Integer {
            bits,
            unsigned: u || unsigned,
        })
    };
    let mut national = false;
    let mut serial = false;
    let declared = match dt {
        D::Zerofill(inner) => return map_data_type(inner, true),
        D::TinyInt(_) | D::Bool | D::Boolean => int(8, false),
        D::TinyIntUnsigned(_) | D::UTinyInt => int(8, true),
        D::SmallInt(_) | D::Int2(_) => int(16, false),
        D::SmallIntUnsigned(_) | D::Int2Unsigned(_) | D::USmallInt => int(16, true),
        D::MediumInt(_) => int(24, false),
        D::MediumIntUnsigned(_) => int(24, true),
        D::Int(_) | D::Integer(_) | D::Int4(_) => int(32, false),
        D::IntUnsigned(_) | D::IntegerUnsigned(_) | D::Int4Unsigned(_) => int(32, true),
        D::BigInt(_) | D::Int8(_) => int(64, false),
        D::BigIntUnsigned(_) | D::Int8Unsigned(_) | D::UBigInt => int(64, true),
        // FLOAT(p) is DOUBLE from p = 25 on.
        D::Float(info) | D::FloatUnsigned(info) => match info {
            ExactNumberInfo::Precision(p) if *p > 53 => {
                return Err(format!("FLOAT({p}) is out of range"));
            }
            ExactNumberInfo::Precision(p) if *p > 24 => plain(ColumnType::Double),
            _ => plain(ColumnType::Float),
        },
        D::Float4 => plain(ColumnType::Float),
        D::Float8
        | D::Real
        | D::RealUnsigned
        | D::Double(_)
        | D::DoubleUnsigned(_)
        | D::DoublePrecision
        | D::DoublePrecisionUnsigned => plain(ColumnType::Double),
        D::Decimal(i) | D::DecimalUnsigned(i) | D::Numeric(i) | D::Dec(i) | D::DecUnsigned(i) => {
            plain(decimal(i)?)
        }
        D::Bit(width) => match width.unwrap_or(1) {
            w @ 1..=64 => plain(ColumnType::Bit { width: w as u8 }),
            w => return Err(format!("BIT({w}) is out of range (1–64)")),
        },
        D::Date => plain(ColumnType::Date),
        D::Time(f, _) => plain(ColumnType::Time { fsp: fsp(f)? }),
        D::Datetime(f) => plain(ColumnType::DateTime { fsp: fsp(f)? }),
        D::Timestamp(f, _) => plain(ColumnType::Timestamp { fsp: fsp(f)? }),
        D::Char(len) | D::Character(len) => Declared::Text {
            kind: StringKind::Char,
            length: char_length(len, Some(1))?,
        },
        D::Varchar(len) | D::CharacterVarying(len) | D::CharVarying(len) => Declared::Text {
            kind: StringKind::VarChar,
            length: char_length(len, None)?,
        },
        D::Nvarchar(len) => {
            national = true;
            Declared::Text {
                kind: StringKind::VarChar,
                length: char_length(len, None)?,
            }
        }
        D::TinyText => Declared::Text {
            kind: StringKind::Tiny,
            length: 255,
        },
        D::Text => Declared::Text {
            kind: StringKind::Text,
            length: 65_535,
        },
        D::MediumText => Declared::Text {
            kind: StringKind::Medium,
            length: 16_777_215,
        },
        D::LongText => Declared::Text {
            kind: StringKind::Long,
            length: u32::MAX,
        },
        D::Binary(len) => Declared::Binary {
            kind: StringKind::Char,
            length: length_u32(len.unwrap_or(1), "BINARY")?,
        },
        D::Varbinary(len) => match len {
            Some(BinaryLength::IntegerLength { length }) => Declared::Binary {
                kind: StringKind::VarChar,
                length: length_u32(*length, "VARBINARY")?,
            },
            _ => return Err("VARBINARY needs a length".into()),
        },
        D::TinyBlob => Declared::Binary {
            kind: StringKind::Tiny,
            length: 255,
        },
        D::Blob(None) => Declared::Binary {
            kind: StringKind::Text,
            length: 65_535,
        },
        D::Blob(Some(n)) => {
            let (kind, length) = text_kind_for_bytes((*n).max(1));
            Declared::Binary { kind, length }
        }
        D::MediumBlob => Declared::Binary {
            kind: StringKind::Medium,
            length: 16_777_215,
        },
        D::LongBlob => Declared::Binary {
            kind: StringKind::Long,
            length: u32::MAX,
        },
        D::Enum(members, _) => plain(ColumnType::Enum {
            members: members
                .iter()
                .map(|m| match m {
                    EnumMember::Name(s) => Ok(s.clone()),
                    EnumMember::NamedValue(s, _) => {
                        Err(format!("ENUM member '{s}' with a value is not MySQL"))
                    }
                })
                .collect::<Result<_, _>>()?,
        }),
        D::Set(members) => plain(ColumnType::Set {
            members: members.clone(),
        }),
        D::JSON => Declared::Json,
        // MariaDB's UUID, INET6 and INET4 are fixed-length binary strings in the binlog.
        D::Uuid => Declared::Binary {
            kind: StringKind::Char,
            length: 16,
        },
        D::GeometricType(GeometricTypeKind::Point) => geometry("point"),
        D::GeometricType(GeometricTypeKind::Polygon) => geometry("polygon"),
        D::Custom(name, modifiers) => {
            let name = object_name_text(name).to_ascii_lowercase();
            let number = |i: usize| -> Result<Option<u64>, String> {
                modifiers
                    .get(i)
                    .map(|m| match m {
                        TypeModifier::Number(n, _) => n
                            .parse::<u64>()
                            .map_err(|_| format!("{name}: `{n}` is not a number")),
                        other => Err(format!("{name}: `{other}` is not a number")),
                    })
                    .transpose()
            };
            match name.as_str() {
                "year" => plain(ColumnType::Year),
                "int1" => int(8, false),
                "int3" | "middleint" => int(24, false),
                "fixed" => plain(decimal(&match (number(0)?, number(1)?) {
                    (None, _) => ExactNumberInfo::None,
                    (Some(p), None) => ExactNumberInfo::Precision(p),
                    (Some(p), Some(s)) => ExactNumberInfo::PrecisionAndScale(p, s as i64),
                })?),
                "nchar" => {
                    national = true;
                    Declared::Text {
                        kind: StringKind::Char,
                        length: length_u32(number(0)?.unwrap_or(1), "NCHAR")?,
                    }
                }
                "text" => Declared::TextChars(number(0)?.unwrap_or(65_535)),
                "serial" => {
                    serial = true;
                    int(64, true)
                }
                "inet6" => Declared::Binary {
                    kind: StringKind::Char,
                    length: 16,
                },
                "inet4" => Declared::Binary {
                    kind: StringKind::Char,
                    length: 4,
                },
                "geometry" | "point" | "linestring" | "polygon" | "multipoint"
                | "multilinestring" | "multipolygon" | "geometrycollection" => geometry(&name),
                "geomcollection" => geometry("geometrycollection"),
                _ => {
                    return Err(format!(
                        "type {} is not supported",
                        dt.to_string().to_ascii_uppercase()
                    ));
                }
            }
        }
        other => return Err(format!("type {other} is not a MySQL type binlake supports")),
    };
    Ok(TypeDecl {
        declared,
        national,
        serial,
    })
}

fn geometry(kind: &str) -> Declared {
    Declared::Plain(ColumnType::Geometry { kind: kind.into() })
}

/// Whether `MODIFY`ing a column from `old` to `new` leaves every stored value as it reads:
/// the same type, or a wider one of the same family (more integer bits, more decimal
/// digits on both sides of the point, FLOAT to DOUBLE, more fractional seconds, longer
/// text in the same charset, members appended to an ENUM or SET). Fixed-length types
/// read differently once padded to another length.
fn keeps_values(old: &ColumnType, new: &ColumnType) -> bool {
    use ColumnType as T;
    use StringKind as K;
    // Variable-length kinds by capacity; CHAR/BINARY are fixed.
    let rank = |k: &K| match k {
        K::Char | K::VarChar => 0,
        K::Tiny => 1,
        K::Text => 2,
        K::Medium => 3,
        K::Long => 4,
    };
    let longer = |(ok, ol): (&K, u32), (nk, nl): (&K, u32), fixed_pads: bool| match (ok, nk) {
        (K::Char, K::Char) => !fixed_pads && nl >= ol || nl == ol,
        (_, K::Char) => false,
        (K::Char | K::VarChar, K::VarChar) => nl >= ol,
        (K::Char | K::VarChar, _) => true,
        (_, K::VarChar) => false,
        _ => rank(nk) >= rank(ok),
    };
    match (old, new) {
        _ if old == new => true,
        (
            T::Integer {
                bits: ob,
                unsigned: ou,
            },
            T::Integer {
                bits: nb,
                unsigned: nu,
            },
        ) => (ou == nu && nb >= ob) || (*ou && !nu && nb > ob),
        (T::Float, T::Double) => true,
        (
            T::Decimal {
                precision: op,
                scale: os,
            },
            T::Decimal {
                precision: np,
                scale: ns,
            },
        ) => ns >= os && np.saturating_sub(*ns) >= op.saturating_sub(*os),
        (T::Time { fsp: o }, T::Time { fsp: n })
        | (T::DateTime { fsp: o }, T::DateTime { fsp: n })
        | (T::Timestamp { fsp: o }, T::Timestamp { fsp: n }) => n >= o,
        (
            T::String {
                kind: ok,
                length: ol,
                charset: oc,
                ..
            },
            T::String {
                kind: nk,
                length: nl,
                charset: nc,
                ..
            },
        ) => oc == nc && longer((ok, *ol), (nk, *nl), false),
        (
            T::Bytes {
                kind: ok,
                length: ol,
            },
            T::Bytes {
                kind: nk,
                length: nl,
            },
        ) => longer((ok, *ol), (nk, *nl), true),
        (T::Enum { members: o }, T::Enum { members: n })
        | (T::Set { members: o }, T::Set { members: n }) => n.starts_with(o),
        _ => false,
    }
}

/// `NULL` (or `(NULL)`) as a `DEFAULT`.
fn is_null_literal(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => matches!(v.value, sqlparser::ast::Value::Null),
        Expr::Nested(inner) => is_null_literal(inner),
        _ => false,
    }
}

/// A column's default from `information_schema.COLUMNS` (`COLUMN_DEFAULT`, `EXTRA`).
/// MariaDB (10.2.7+) quotes literal strings, shows numbers bare, `NULL` for a NULL default
/// and expressions as their text, and SQL NULL for no default. MySQL shows literals bare,
/// SQL NULL for both no default and a NULL default, and marks expressions
/// `DEFAULT_GENERATED` in `EXTRA`.
fn information_schema_default(
    flavor: Flavor,
    default: Option<&str>,
    extra: &str,
    nullable: bool,
) -> ColumnDefault {
    let extra = extra.to_ascii_uppercase();
    if extra.contains("GENERATED") || extra.contains("AUTO_INCREMENT") {
        return ColumnDefault::Unknown;
    }
    match (flavor, default) {
        (_, None) if nullable && flavor == Flavor::Mysql => ColumnDefault::Null,
        (_, None) => ColumnDefault::Unknown,
        (Flavor::Mysql, Some(text)) => ColumnDefault::Literal(text.to_string()),
        (Flavor::MariaDb, Some(text)) if text.eq_ignore_ascii_case("NULL") => ColumnDefault::Null,
        (Flavor::MariaDb, Some(text)) => {
            match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
                // How backslashes are escaped there is not something to guess at.
                Some(quoted) if quoted.contains('\\') => ColumnDefault::Unknown,
                Some(quoted) => ColumnDefault::Literal(quoted.replace("''", "'")),
                None if text.parse::<f64>().is_ok() => ColumnDefault::Literal(text.to_string()),
                None => ColumnDefault::Unknown,
            }
        }
    }
}

/// What a `DEFAULT` expression gives, as far as binlake evaluates it: a constant literal,
/// NULL, or (anything else) unknown.
fn default_of(e: &Expr) -> ColumnDefault {
    use sqlparser::ast::{UnaryOperator, Value as V};
    match e {
        Expr::Value(v) => match &v.value {
            V::Null => ColumnDefault::Null,
            V::Number(n, _) => ColumnDefault::Literal(n.clone()),
            V::SingleQuotedString(t) | V::DoubleQuotedString(t) => {
                ColumnDefault::Literal(t.clone())
            }
            V::Boolean(b) => ColumnDefault::Literal(if *b { "1" } else { "0" }.into()),
            _ => ColumnDefault::Unknown,
        },
        // `_utf8mb4'y'`: the text is the literal (other introducers name other bytes).
        Expr::Prefixed { prefix, value }
            if prefix.value.to_ascii_lowercase().starts_with("_utf8") =>
        {
            default_of(value)
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match default_of(expr) {
            ColumnDefault::Literal(n) if n.parse::<f64>().is_ok() && !n.starts_with('-') => {
                ColumnDefault::Literal(format!("-{n}"))
            }
            _ => ColumnDefault::Unknown,
        },
        _ => ColumnDefault::Unknown,
    }
}

/// `default` for a column of type `ty`, kept only where binlake turns it into exactly the
/// value the server stores: NULL (not for TIMESTAMP, whose implicit defaults depend on
/// server settings), and literals of integer, VARCHAR/TEXT, ENUM and SET columns (not
/// CHAR, which the server pads, nor decimals, floats, temporal, bit or binary values,
/// whose literal forms vary).
fn known_default(ty: &ColumnType, nullable: bool, default: ColumnDefault) -> ColumnDefault {
    match (ty, default) {
        (ColumnType::Timestamp { .. }, _) => ColumnDefault::Unknown,
        (_, ColumnDefault::Null) if nullable => ColumnDefault::Null,
        (
            ColumnType::Integer { .. }
            | ColumnType::Enum { .. }
            | ColumnType::Set { .. }
            | ColumnType::String {
                kind:
                    StringKind::VarChar
                    | StringKind::Tiny
                    | StringKind::Text
                    | StringKind::Medium
                    | StringKind::Long,
                ..
            },
            ColumnDefault::Literal(t),
        ) => ColumnDefault::Literal(t),
        _ => ColumnDefault::Unknown,
    }
}

fn object_name_text(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

// ---------------------------------------------------------------------------------------
// Statements.

/// A table name as written: `db.t` or `t` (in the default database).
#[derive(Debug, Clone, PartialEq)]
struct Name {
    db: Option<String>,
    table: String,
}

/// What a statement does to schemas.
#[derive(Debug)]
enum Statement {
    /// Nothing (DML, TRUNCATE, users, views, temporary tables, indexes …).
    Other,
    CreateTable {
        name: Name,
        if_not_exists: bool,
        body: CreateBody,
    },
    AlterTable {
        name: Name,
        specs: Vec<Spec>,
    },
    RenameTables(Vec<(Name, Name)>),
    DropTables(Vec<Name>),
    CreateDatabase {
        name: String,
        if_not_exists: bool,
        charset: Option<String>,
    },
    AlterDatabase {
        name: Option<String>,
        charset: Option<String>,
    },
    DropDatabase(String),
}

#[derive(Debug)]
enum CreateBody {
    Like(Name),
    Columns {
        elements: Vec<Element>,
        /// The table's `DEFAULT CHARSET` / `COLLATE`, when given.
        charset: Option<String>,
    },
}

#[derive(Debug)]
enum Element {
    Column(ColumnDef),
    Key(KeyDef),
}

/// An index or constraint definition; only primary and unique keys matter.
#[derive(Debug)]
enum KeyDef {
    Primary(Vec<String>),
    Unique {
        name: Option<String>,
        columns: Vec<String>,
        partial: bool,
    },
    Other,
}

/// A column definition as parsed.
#[derive(Debug, Clone)]
struct ColumnDef {
    name: String,
    ty: TypeDecl,
    /// `CHARACTER SET` (or `ASCII`, `UNICODE`, `BYTE`).
    charset: Option<String>,
    /// `COLLATE`: gives the charset when `CHARACTER SET` is absent.
    collation: Option<String>,
    /// `NULL` / `NOT NULL` as declared.
    null: Option<bool>,
    /// Inline `PRIMARY KEY` (or `KEY`).
    primary: bool,
    /// Inline `UNIQUE [KEY]` (or `SERIAL`, `SERIAL DEFAULT VALUE`).
    unique: bool,
    /// Rows already in the table get a value other than NULL when the column is added:
    /// a non-NULL `DEFAULT`, `NOT NULL` (the type's implicit default), generated,
    /// `AUTO_INCREMENT`.
    fills: bool,
    /// The column-level `CHECK`: MariaDB's JSON is a LONGTEXT checked by `json_valid`.
    check: ColumnCheck,
    /// The `DEFAULT` clause, when there is one.
    default: Option<ColumnDefault>,
    /// Generated or `AUTO_INCREMENT`: no default an INSERT could leave to it.
    generated: bool,
    /// `AUTO_INCREMENT`, which the server makes `NOT NULL`.
    auto_increment: bool,
}

impl ColumnDef {
    fn charset(&self, table_default: &str) -> String {
        self.charset
            .clone()
            .or_else(|| self.collation.as_deref().and_then(charset_of_collation))
            .unwrap_or_else(|| table_default.to_string())
    }

    fn nullable(&self) -> bool {
        !(self.primary || self.ty.serial || self.auto_increment) && self.null.unwrap_or(true)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Position {
    Last,
    First,
    After(String),
}

/// One specification of an `ALTER TABLE` that matters to the schema.
#[derive(Debug)]
enum Spec {
    /// Columns with their position and `IF NOT EXISTS`.
    Add(Vec<(ColumnDef, Position, bool)>),
    Drop {
        column: String,
        if_exists: bool,
    },
    /// `CHANGE old def` and `MODIFY def` (where `old` is the defined column's name).
    Change {
        old: String,
        def: ColumnDef,
        pos: Position,
        if_exists: bool,
    },
    RenameColumn {
        old: String,
        new: String,
    },
    /// `ALTER [COLUMN] c SET DEFAULT x` (`Some`) or `DROP DEFAULT` (`None`).
    SetDefault {
        column: String,
        default: Option<ColumnDefault>,
    },
    AddKey {
        key: KeyDef,
        if_not_exists: bool,
    },
    DropPrimaryKey,
    /// `DROP INDEX/KEY/CONSTRAINT name` (`PRIMARY` is the primary key).
    DropIndex {
        name: String,
        if_exists: bool,
    },
    RenameIndex {
        old: String,
        new: String,
    },
    /// `CONVERT TO CHARACTER SET cs`; `None` for `DEFAULT` (the database's).
    Convert(Option<String>),
    /// `[DEFAULT] CHARACTER SET cs`; `None` for `DEFAULT`.
    DefaultCharset(Option<String>),
    Rename(Name),
    ConvertPartitionToTable(Name),
    ConvertTableToPartition(Name),
}

/// Table options and ALTER TABLE specifications that change neither columns nor the
/// primary key.
const IGNORED_ALTER_SPECS: &[&str] = &[
    "ALGORITHM",
    "AUTOEXTEND_SIZE",
    "AUTO_INCREMENT",
    "AVG_ROW_LENGTH",
    "CHECKSUM",
    "COMMENT",
    "COMPRESSION",
    "CONNECTION",
    "DATA",
    "DELAY_KEY_WRITE",
    "DISABLE",
    "ENABLE",
    "ENCRYPTED",
    "ENCRYPTION",
    "ENCRYPTION_KEY_ID",
    "ENGINE",
    "ENGINE_ATTRIBUTE",
    "FORCE",
    "IETF_QUOTES",
    "INDEX",
    "INSERT_METHOD",
    "KEY_BLOCK_SIZE",
    "LOCK",
    "MAX_ROWS",
    "MIN_ROWS",
    "PACK_KEYS",
    "PAGE_CHECKSUM",
    "PAGE_COMPRESSED",
    "PAGE_COMPRESSION_LEVEL",
    "PASSWORD",
    "ROW_FORMAT",
    "SECONDARY_ENGINE",
    "SECONDARY_ENGINE_ATTRIBUTE",
    "SECONDARY_LOAD",
    "SECONDARY_UNLOAD",
    "SEQUENCE",
    "STATS_AUTO_RECALC",
    "STATS_PERSISTENT",
    "STATS_SAMPLE_PAGES",
    "STORAGE",
    "TABLESPACE",
    "TABLE_CHECKSUM",
    "TRANSACTIONAL",
    "UNION",
    "WITHOUT",
];

/// ALTER TABLE specifications about partitions (they may hold comma-separated lists and
/// come alone or last): the rest of the statement is ignored.
const PARTITION_SPECS: &[&str] = &[
    "ANALYZE",
    "CHECK",
    "COALESCE",
    "EXCHANGE",
    "OPTIMIZE",
    "PARTITION",
    "REBUILD",
    "REMOVE",
    "REORGANIZE",
    "REPAIR",
    "TRUNCATE",
    "UPGRADE",
];

/// A token cursor over one statement: sqlparser's tokenizer and parser, with helpers for
/// MySQL words sqlparser has no grammar for.
struct Sql<'a> {
    p: Parser<'a>,
}

impl Sql<'static> {
    fn new(sql: &str) -> Result<Self, String> {
        let tokens = tokenize(sql)?;
        Ok(Sql {
            p: Parser::new(&DIALECT).with_tokens(tokens),
        })
    }
}

/// Tokens without whitespace and comments; MariaDB's executable comments
/// (`/*M!100100 … */`) are unwrapped like MySQL's (`/*!50100 … */`, which sqlparser
/// unwraps itself): the server that wrote the binlog ran their content.
fn tokenize(sql: &str) -> Result<Vec<Token>, String> {
    let raw = Tokenizer::new(&DIALECT, sql)
        .tokenize()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(raw.len());
    for token in raw {
        match token {
            Token::Whitespace(Whitespace::MultiLineComment(c)) if c.starts_with("M!") => {
                let inner = c[2..].trim_start_matches(|ch: char| ch.is_ascii_digit());
                out.extend(tokenize(inner)?);
            }
            Token::Whitespace(_) => {}
            t => out.push(t),
        }
    }
    Ok(out)
}

impl Sql<'_> {
    fn peek(&self) -> &Token {
        &self.p.peek_token_ref().token
    }

    /// The unquoted word `n` tokens ahead.
    fn word_at(&self, n: usize) -> Option<&str> {
        match &self.p.peek_nth_token_ref(n).token {
            Token::Word(w) if w.quote_style.is_none() => Some(&w.value),
            _ => None,
        }
    }

    fn is(&self, word: &str) -> bool {
        self.word_at(0)
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    }

    fn is_any(&self, words: &[&str]) -> bool {
        self.word_at(0)
            .is_some_and(|w| words.iter().any(|x| w.eq_ignore_ascii_case(x)))
    }

    fn eat(&mut self, word: &str) -> bool {
        let yes = self.is(word);
        if yes {
            self.p.next_token();
        }
        yes
    }

    /// All of `words` in sequence, or nothing consumed.
    fn eat_all(&mut self, words: &[&str]) -> bool {
        let all = words
            .iter()
            .enumerate()
            .all(|(i, w)| self.word_at(i).is_some_and(|x| x.eq_ignore_ascii_case(w)));
        if all {
            for _ in words {
                self.p.next_token();
            }
        }
        all
    }

    fn eat_token(&mut self, t: &Token) -> bool {
        self.p.consume_token(t)
    }

    fn expect(&mut self, word: &str) -> Result<(), String> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("where {word} was expected")))
        }
    }

    fn expect_token(&mut self, t: &Token) -> Result<(), String> {
        if self.eat_token(t) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("where `{t}` was expected")))
        }
    }

    fn unexpected(&self, context: &str) -> String {
        match self.peek() {
            Token::EOF => format!("unexpected end of statement {context}"),
            t => format!("unexpected `{t}` {context}"),
        }
    }

    fn at_end(&mut self) -> bool {
        while self.eat_token(&Token::SemiColon) {}
        matches!(self.peek(), Token::EOF)
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek() {
            Token::Word(_) | Token::SingleQuotedString(_) | Token::DoubleQuotedString(_) => self
                .p
                .parse_identifier()
                .map(|i| i.value)
                .map_err(|e| e.to_string()),
            _ => Err(self.unexpected("where a name was expected")),
        }
    }

    /// `[db.]table`.
    fn name(&mut self) -> Result<Name, String> {
        let first = self.ident()?;
        if self.eat_token(&Token::Period) {
            Ok(Name {
                db: Some(first),
                table: self.ident()?,
            })
        } else {
            Ok(Name {
                db: None,
                table: first,
            })
        }
    }

    fn skip_eq(&mut self) {
        self.eat_token(&Token::Eq);
    }

    /// Skips to the next `,` or `)` outside parentheses (not consumed), or the end.
    fn skip_element(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Token::EOF => return,
                Token::Comma | Token::RParen if depth == 0 => return,
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            self.p.next_token();
        }
    }

    fn skip_rest(&mut self) {
        while !matches!(self.peek(), Token::EOF) {
            self.p.next_token();
        }
    }

    /// `IF NOT EXISTS` / `IF EXISTS`.
    fn if_not_exists(&mut self) -> bool {
        self.eat_all(&["IF", "NOT", "EXISTS"])
    }

    fn if_exists(&mut self) -> bool {
        self.eat_all(&["IF", "EXISTS"])
    }

    /// A charset name after `CHARACTER SET [=]`: `None` for `DEFAULT`.
    fn charset_name(&mut self) -> Result<Option<String>, String> {
        self.skip_eq();
        if self.eat("DEFAULT") {
            return Ok(None);
        }
        Ok(Some(normalize_charset(&self.ident()?)))
    }

    /// `CHARACTER SET` or `CHARSET`.
    fn eat_charset_keyword(&mut self) -> bool {
        self.eat_all(&["CHARACTER", "SET"]) || self.eat("CHARSET")
    }

    /// A column type, including MySQL synonyms sqlparser does not know and the trailing
    /// `SIGNED`/`UNSIGNED`/`ZEROFILL` sqlparser leaves after some types.
    fn data_type(&mut self) -> Result<TypeDecl, String> {
        let national = self.eat("NATIONAL");
        if self.eat("LONG") {
            // LONG and LONG VARCHAR are MEDIUMTEXT, LONG VARBINARY is MEDIUMBLOB.
            let declared = if self.eat("VARBINARY") {
                Declared::Binary {
                    kind: StringKind::Medium,
                    length: 16_777_215,
                }
            } else {
                self.eat("VARCHAR");
                Declared::Text {
                    kind: StringKind::Medium,
                    length: 16_777_215,
                }
            };
            return Ok(TypeDecl {
                declared,
                national,
                serial: false,
            });
        }
        let dt = self.p.parse_data_type().map_err(|e| e.to_string())?;
        let mut unsigned = false;
        loop {
            if self.eat("UNSIGNED") || self.eat("ZEROFILL") {
                unsigned = true;
            } else if !self.eat("SIGNED") {
                break;
            }
        }
        let mut decl = map_data_type(&dt, unsigned)?;
        decl.national |= national;
        Ok(decl)
    }

    fn at_column_end(&self) -> bool {
        matches!(
            self.peek(),
            Token::Comma | Token::RParen | Token::EOF | Token::SemiColon
        ) || self.is_any(&["FIRST", "AFTER", "PARTITION"])
    }

    /// `name type [attributes]`.
    fn column_def(&mut self) -> Result<ColumnDef, String> {
        let name = self.ident()?;
        let ty = self
            .data_type()
            .map_err(|e| format!("column {name}: {e}"))?;
        let mut def = ColumnDef {
            name,
            charset: None,
            collation: None,
            null: None,
            primary: false,
            unique: ty.serial,
            fills: ty.serial,
            check: ColumnCheck::None,
            default: None,
            generated: ty.serial,
            auto_increment: false,
            ty,
        };
        while !self.at_column_end() {
            self.column_attribute(&mut def)
                .map_err(|e| format!("column {}: {e}", def.name))?;
        }
        def.fills |= def.null == Some(false) || def.primary;
        Ok(def)
    }

    fn column_attribute(&mut self, def: &mut ColumnDef) -> Result<(), String> {
        // MySQL and MariaDB attributes sqlparser's MySQL dialect does not parse.
        if self.eat_charset_keyword() {
            def.charset = self.charset_name()?;
        } else if self.eat("COLLATE") {
            self.skip_eq();
            def.collation = Some(self.ident()?);
        } else if self.eat("BINARY") {
            // `CHAR(n) BINARY`: the binary collation of the charset; still text.
        } else if self.eat("ASCII") {
            def.charset = Some("latin1".into());
        } else if self.eat("UNICODE") {
            def.charset = Some("ucs2".into());
        } else if self.eat("BYTE") {
            def.charset = Some("binary".into());
        } else if self.is_any(&["VISIBLE", "PERSISTENT", "STORED", "VIRTUAL"]) {
            self.p.next_token();
        } else if self.is_any(&[
            "COLUMN_FORMAT",
            "STORAGE",
            "REF_SYSTEM_ID",
            "ENGINE_ATTRIBUTE",
            "SECONDARY_ENGINE_ATTRIBUTE",
        ]) {
            self.p.next_token();
            self.skip_eq();
            self.p.next_token();
        } else if self.eat("COMPRESSED") {
            if self.eat_token(&Token::Eq) {
                self.p.next_token();
            }
        } else if self.eat_all(&["SERIAL", "DEFAULT", "VALUE"]) {
            // NOT NULL AUTO_INCREMENT UNIQUE
            def.ty.serial = true;
            def.unique = true;
            def.fills = true;
            def.generated = true;
        } else if self.eat_all(&["NOT", "SECONDARY"]) {
        } else if self.is_any(&["WITH", "WITHOUT"])
            && self
                .word_at(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("SYSTEM"))
        {
            return Err("system-versioned columns are not supported".into());
        } else {
            match self
                .p
                .parse_optional_column_option()
                .map_err(|e| e.to_string())?
            {
                Some(ColumnOption::NotNull) => def.null = Some(false),
                Some(ColumnOption::Null) => def.null = Some(true),
                Some(ColumnOption::PrimaryKey(_)) => def.primary = true,
                Some(ColumnOption::Unique(_)) => def.unique = true,
                Some(ColumnOption::CharacterSet(name)) => {
                    def.charset = Some(normalize_charset(&object_name_text(&name)));
                }
                Some(ColumnOption::Collation(name)) => {
                    def.collation = Some(object_name_text(&name))
                }
                // `DEFAULT 'x' COLLATE c`: the collation is the column's.
                Some(ColumnOption::Default(Expr::Collate { collation, expr })) => {
                    def.collation = Some(object_name_text(&collation));
                    def.fills = true;
                    def.default = Some(default_of(&expr));
                }
                Some(ColumnOption::Default(e)) => {
                    def.fills |= !is_null_literal(&e);
                    def.default = Some(default_of(&e));
                }
                Some(ColumnOption::Check(c)) => {
                    def.check = if json_valid_column(&c.expr).is_some_and(|n| same_name(n, &def.name)) {
                        ColumnCheck::JsonValid
                    } else {
                        ColumnCheck::Other
                    };
                }
                Some(ColumnOption::Generated {
                    generation_expr: None,
                    ..
                }) => return Err("only generated columns with an expression are supported".into()),
                Some(ColumnOption::Generated { .. }) => {
                    def.fills = true;
                    def.generated = true;
                }
                Some(ColumnOption::DialectSpecific(tokens))
                    if tokens.iter().any(|t| {
                        matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("AUTO_INCREMENT"))
                    }) =>
                {
                    def.fills = true;
                    def.generated = true;
                    def.auto_increment = true;
                }
                Some(_) => {}
                None => return Err(self.unexpected("in the column definition")),
            }
        }
        Ok(())
    }

    /// `FIRST` | `AFTER col` | nothing.
    fn position(&mut self) -> Result<Position, String> {
        if self.eat("FIRST") {
            Ok(Position::First)
        } else if self.eat("AFTER") {
            Ok(Position::After(self.ident()?))
        } else {
            Ok(Position::Last)
        }
    }

    /// After `PRIMARY KEY`: `[name] [USING type] (col[(len)] [ASC|DESC], …) [options]`.
    /// `[name] [USING type] (part, …) [options]`, up to the end of the element. Returns the
    /// index name, the columns, and whether a part is a prefix (`a(10)`) or an expression.
    fn key_parts(&mut self) -> Result<(Option<String>, Vec<String>, bool), String> {
        let name = if !matches!(self.peek(), Token::LParen) && !self.is("USING") {
            Some(self.ident()?)
        } else {
            None
        };
        if self.eat("USING") {
            self.p.next_token();
        }
        self.expect_token(&Token::LParen)?;
        let mut columns = Vec::new();
        let mut partial = false;
        loop {
            if self.eat_token(&Token::LParen) {
                // A functional key part, `((expr))`.
                self.skip_element();
                self.expect_token(&Token::RParen)?;
                partial = true;
            } else {
                columns.push(self.ident()?);
                if self.eat_token(&Token::LParen) {
                    self.skip_element();
                    self.expect_token(&Token::RParen)?;
                    partial = true;
                }
            }
            let _ = self.eat("ASC") || self.eat("DESC");
            if self.eat_token(&Token::RParen) {
                break;
            }
            self.expect_token(&Token::Comma)?;
        }
        self.skip_element(); // index options
        Ok((name, columns, partial))
    }

    /// An index or constraint definition, up to the end of the element:
    /// `[CONSTRAINT [symbol]] PRIMARY KEY …`, `… UNIQUE [INDEX|KEY] [IF NOT EXISTS] …`, or
    /// any other index, foreign key or check (skipped). The second value is MariaDB's
    /// `IF NOT EXISTS`.
    fn key_def(&mut self) -> Result<(KeyDef, bool), String> {
        let mut symbol = None;
        if self.eat("CONSTRAINT") && !self.is_any(&["PRIMARY", "UNIQUE", "FOREIGN", "CHECK"]) {
            symbol = Some(self.ident()?);
        }
        if self.eat_all(&["PRIMARY", "KEY"]) {
            let (_, columns, partial) = self.key_parts()?;
            if partial && columns.is_empty() {
                return Err("a primary key on an expression is not possible".into());
            }
            return Ok((KeyDef::Primary(columns), false));
        }
        if self.eat("UNIQUE") {
            let _ = self.eat("INDEX") || self.eat("KEY");
            let if_not_exists = self.if_not_exists();
            let (name, columns, partial) = self.key_parts()?;
            let name = name.or(symbol);
            return Ok((
                KeyDef::Unique {
                    name,
                    columns,
                    partial,
                },
                if_not_exists,
            ));
        }
        self.skip_element();
        Ok((KeyDef::Other, false))
    }

    /// Whether an index or constraint definition starts here.
    fn at_key_def(&self) -> bool {
        self.is_any(&[
            "CONSTRAINT",
            "PRIMARY",
            "UNIQUE",
            "INDEX",
            "KEY",
            "FULLTEXT",
            "SPATIAL",
            "FOREIGN",
            "CHECK",
        ]) || (self.is("PERIOD")
            && self
                .word_at(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("FOR")))
    }
}

/// Parses one statement. `touched` receives the tables it would change as soon as they
/// are known, so that a failure further on can forget them.
fn parse_statement(sql: &str, touched: &mut Vec<Name>) -> Result<Statement, String> {
    let mut s = match Sql::new(sql) {
        Ok(s) => s,
        // Text that does not even tokenize is only an error when it looks like DDL.
        Err(e) if looks_like_schema_statement(sql) => return Err(e),
        Err(_) => return Ok(Statement::Other),
    };
    let stmt = if s.eat("CREATE") {
        s.eat_all(&["OR", "REPLACE"]);
        if s.eat("TEMPORARY") {
            // Temporary tables have no rows in a row-based binlog.
            return Ok(Statement::Other);
        }
        while s.eat("ONLINE") || s.eat("OFFLINE") {}
        if s.eat("TABLE") {
            create_table(&mut s, touched)?
        } else if s.eat_all(&["UNIQUE", "INDEX"]) || s.eat_all(&["UNIQUE", "KEY"]) {
            // A UNIQUE key may become the primary key the server uses.
            let if_not_exists = s.if_not_exists();
            let index = s.ident()?;
            if s.eat("USING") {
                s.p.next_token();
            }
            s.expect("ON")?;
            let table = s.name()?;
            touched.push(table.clone());
            let (_, columns, partial) = s.key_parts()?;
            s.skip_rest(); // ALGORITHM=…, LOCK=…
            Statement::AlterTable {
                name: table,
                specs: vec![Spec::AddKey {
                    key: KeyDef::Unique {
                        name: Some(index),
                        columns,
                        partial,
                    },
                    if_not_exists,
                }],
            }
        } else if s.eat("DATABASE") || s.eat("SCHEMA") {
            let if_not_exists = s.if_not_exists();
            let name = s.ident()?;
            let charset = database_options(&mut s)?;
            Statement::CreateDatabase {
                name,
                if_not_exists,
                charset,
            }
        } else {
            return Ok(Statement::Other);
        }
    } else if s.eat("ALTER") {
        while s.eat("ONLINE") || s.eat("OFFLINE") || s.eat("IGNORE") {}
        if s.eat("TABLE") {
            alter_table(&mut s, touched)?
        } else if s.eat("DATABASE") || s.eat("SCHEMA") {
            let name = if s.is_any(&[
                "DEFAULT",
                "CHARACTER",
                "CHARSET",
                "COLLATE",
                "ENCRYPTION",
                "READ",
                "COMMENT",
            ]) || matches!(s.peek(), Token::EOF)
            {
                None
            } else {
                Some(s.ident()?)
            };
            if s.eat_all(&["UPGRADE", "DATA", "DIRECTORY", "NAME"]) {
                return Ok(Statement::Other);
            }
            let charset = database_options(&mut s)?;
            Statement::AlterDatabase { name, charset }
        } else {
            return Ok(Statement::Other);
        }
    } else if s.eat("RENAME") {
        if !(s.eat("TABLE") || s.eat("TABLES")) {
            return Ok(Statement::Other);
        }
        s.if_exists();
        let mut pairs = Vec::new();
        loop {
            let from = s.name()?;
            touched.push(from.clone());
            if s.eat("WAIT") {
                s.p.next_token();
            }
            s.eat("NOWAIT");
            s.expect("TO")?;
            let to = s.name()?;
            touched.push(to.clone());
            pairs.push((from, to));
            if !s.eat_token(&Token::Comma) {
                break;
            }
        }
        Statement::RenameTables(pairs)
    } else if s.eat("DROP") {
        if s.eat("TEMPORARY") {
            return Ok(Statement::Other);
        }
        if s.eat("TABLE") || s.eat("TABLES") {
            s.if_exists();
            let mut names = Vec::new();
            loop {
                let name = s.name()?;
                touched.push(name.clone());
                names.push(name);
                if !s.eat_token(&Token::Comma) {
                    break;
                }
            }
            if s.eat("WAIT") {
                s.p.next_token();
            }
            let _ = s.eat("NOWAIT") || s.eat("RESTRICT") || s.eat("CASCADE");
            Statement::DropTables(names)
        } else if s.eat("DATABASE") || s.eat("SCHEMA") {
            s.if_exists();
            Statement::DropDatabase(s.ident()?)
        } else if s.eat("INDEX") || s.eat("KEY") {
            let if_exists = s.if_exists();
            let index = s.ident()?;
            s.expect("ON")?;
            let table = s.name()?;
            touched.push(table.clone());
            s.skip_rest(); // ALGORITHM=…, LOCK=…
            Statement::AlterTable {
                name: table,
                specs: vec![Spec::DropIndex {
                    name: index,
                    if_exists,
                }],
            }
        } else {
            return Ok(Statement::Other);
        }
    } else {
        return Ok(Statement::Other);
    };
    if !s.at_end() {
        return Err(s.unexpected("at the end of the statement"));
    }
    Ok(stmt)
}

/// For text that does not tokenize: does it start like a statement this module handles?
fn looks_like_schema_statement(sql: &str) -> bool {
    let mut words = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_ascii_uppercase);
    let first = words.next().unwrap_or_default();
    let second = words
        .find(|w| {
            !matches!(
                w.as_str(),
                "OR" | "REPLACE" | "ONLINE" | "OFFLINE" | "IGNORE"
            )
        })
        .unwrap_or_default();
    matches!(first.as_str(), "CREATE" | "ALTER" | "DROP" | "RENAME")
        && matches!(second.as_str(), "TABLE" | "TABLES" | "DATABASE" | "SCHEMA")
}

/// Database options: the charset they set, if any (COLLATE implies its charset).
fn database_options(s: &mut Sql<'_>) -> Result<Option<String>, String> {
    let mut charset = None;
    let mut collation_charset = None;
    while !s.at_end() {
        s.eat("DEFAULT");
        if s.eat_charset_keyword() {
            charset = Some(s.charset_name()?);
        } else if s.eat("COLLATE") {
            s.skip_eq();
            collation_charset = charset_of_collation(&s.ident()?);
        } else {
            // ENCRYPTION, COMMENT, READ ONLY: no bearing on tables.
            s.p.next_token();
        }
    }
    Ok(charset.flatten().or(collation_charset))
}

fn create_table(s: &mut Sql<'_>, touched: &mut Vec<Name>) -> Result<Statement, String> {
    let if_not_exists = s.if_not_exists();
    let name = s.name()?;
    touched.push(name.clone());
    let like = if s.eat("LIKE") {
        Some(s.name()?)
    } else if matches!(s.peek(), Token::LParen)
        && s.word_at(1).is_some_and(|w| w.eq_ignore_ascii_case("LIKE"))
    {
        s.p.next_token();
        s.p.next_token();
        let source = s.name()?;
        s.expect_token(&Token::RParen)?;
        Some(source)
    } else {
        None
    };
    if let Some(source) = like {
        return Ok(Statement::CreateTable {
            name,
            if_not_exists,
            body: CreateBody::Like(source),
        });
    }
    let select = "CREATE TABLE … SELECT without the column definitions (the server logs the expanded definition in row-based binlogs)";
    if !s.eat_token(&Token::LParen) {
        return Err(select.into());
    }
    if s.is_any(&["SELECT", "WITH", "VALUES", "TABLE"]) || matches!(s.peek(), Token::LParen) {
        return Err(select.into());
    }
    let mut elements = Vec::new();
    loop {
        if s.at_key_def() {
            elements.push(Element::Key(s.key_def()?.0));
        } else {
            elements.push(Element::Column(s.column_def()?));
        }
        if s.eat_token(&Token::RParen) {
            break;
        }
        s.expect_token(&Token::Comma)?;
    }
    // Table options, then partitioning and an optional query.
    let mut charset = None;
    let mut collation_charset = None;
    while !s.at_end() {
        if s.eat("DEFAULT") {
            continue;
        }
        if s.eat_charset_keyword() {
            charset = Some(s.charset_name()?);
        } else if s.eat("COLLATE") {
            s.skip_eq();
            collation_charset = charset_of_collation(&s.ident()?);
        } else if s.is("PARTITION") {
            s.skip_rest();
        } else if s.is_any(&["WITH"])
            && s.word_at(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("SYSTEM"))
        {
            return Err("system-versioned tables are not supported".into());
        } else if s.is_any(&["AS", "SELECT", "IGNORE", "REPLACE", "VALUES", "TABLE"])
            || matches!(s.peek(), Token::LParen)
        {
            return Err(
                "CREATE TABLE … SELECT: the types of the selected columns are unknown".into(),
            );
        } else if s.eat_token(&Token::Eq) {
            // An option's value: a single token or a list, as in UNION=(t1,t2).
            if s.eat_token(&Token::LParen) {
                s.skip_element();
                s.expect_token(&Token::RParen)?;
            } else {
                s.p.next_token();
            }
        } else {
            // ENGINE=…, ROW_FORMAT=…, COMMENT '…', START TRANSACTION, …
            s.p.next_token();
        }
    }
    let charset = match charset {
        Some(Some(cs)) => Some(cs),
        // DEFAULT CHARSET=DEFAULT: the database's.
        Some(None) => None,
        None => collation_charset,
    };
    Ok(Statement::CreateTable {
        name,
        if_not_exists,
        body: CreateBody::Columns { elements, charset },
    })
}

fn alter_table(s: &mut Sql<'_>, touched: &mut Vec<Name>) -> Result<Statement, String> {
    s.if_exists();
    let name = s.name()?;
    touched.push(name.clone());
    if s.eat("WAIT") {
        s.p.next_token();
    }
    s.eat("NOWAIT");
    let mut specs = Vec::new();
    while !s.at_end() {
        match alter_spec(s, touched)? {
            SpecParse::Spec(spec) => specs.push(spec),
            SpecParse::Ignored => {}
            SpecParse::IgnoreRest => {
                s.skip_rest();
                break;
            }
        }
        if s.at_end() {
            break;
        }
        if s.is("PARTITION") {
            s.skip_rest();
            break;
        }
        s.expect_token(&Token::Comma)?;
    }
    Ok(Statement::AlterTable { name, specs })
}

enum SpecParse {
    Spec(Spec),
    Ignored,
    IgnoreRest,
}

fn alter_spec(s: &mut Sql<'_>, touched: &mut Vec<Name>) -> Result<SpecParse, String> {
    use SpecParse::{IgnoreRest, Ignored};
    let spec = |spec: Spec| Ok(SpecParse::Spec(spec));
    if s.eat("ADD") {
        if s.at_key_def() {
            let (key, if_not_exists) = s.key_def()?;
            return spec(Spec::AddKey { key, if_not_exists });
        }
        if s.is("PARTITION") && matches!(s.p.peek_nth_token_ref(1).token, Token::LParen) {
            return Ok(IgnoreRest);
        }
        if s.is("SYSTEM")
            && s.word_at(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("VERSIONING"))
        {
            return Err("ADD SYSTEM VERSIONING is not supported".into());
        }
        s.eat("COLUMN");
        let if_not_exists = s.if_not_exists();
        if s.eat_token(&Token::LParen) {
            let mut defs = Vec::new();
            loop {
                defs.push((s.column_def()?, Position::Last, if_not_exists));
                if s.eat_token(&Token::RParen) {
                    break;
                }
                s.expect_token(&Token::Comma)?;
            }
            return spec(Spec::Add(defs));
        }
        let def = s.column_def()?;
        let pos = s.position()?;
        return spec(Spec::Add(vec![(def, pos, if_not_exists)]));
    }
    if s.eat("DROP") {
        if s.eat_all(&["PRIMARY", "KEY"]) {
            return spec(Spec::DropPrimaryKey);
        }
        if s.eat("INDEX") || s.eat("KEY") || s.eat("CONSTRAINT") {
            let if_exists = s.if_exists();
            let name = s.ident()?;
            return spec(Spec::DropIndex { name, if_exists });
        }
        if s.is_any(&["FOREIGN", "CHECK", "PERIOD"]) {
            s.skip_element();
            return Ok(Ignored);
        }
        if s.is("PARTITION") {
            return Ok(IgnoreRest);
        }
        if s.is("SYSTEM")
            && s.word_at(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("VERSIONING"))
        {
            return Err("DROP SYSTEM VERSIONING is not supported".into());
        }
        s.eat("COLUMN");
        let if_exists = s.if_exists();
        let column = s.ident()?;
        let _ = s.eat("RESTRICT") || s.eat("CASCADE");
        return spec(Spec::Drop { column, if_exists });
    }
    if s.eat("MODIFY") {
        s.eat("COLUMN");
        let if_exists = s.if_exists();
        let def = s.column_def()?;
        let pos = s.position()?;
        return spec(Spec::Change {
            old: def.name.clone(),
            def,
            pos,
            if_exists,
        });
    }
    if s.eat("CHANGE") {
        s.eat("COLUMN");
        let if_exists = s.if_exists();
        let old = s.ident()?;
        let def = s.column_def()?;
        let pos = s.position()?;
        return spec(Spec::Change {
            old,
            def,
            pos,
            if_exists,
        });
    }
    if s.eat("RENAME") {
        if s.eat("COLUMN") {
            let old = s.ident()?;
            s.expect("TO")?;
            let new = s.ident()?;
            return spec(Spec::RenameColumn { old, new });
        }
        if s.eat("INDEX") || s.eat("KEY") {
            let old = s.ident()?;
            s.expect("TO")?;
            let new = s.ident()?;
            return spec(Spec::RenameIndex { old, new });
        }
        let _ = s.eat("TO") || s.eat("AS");
        let to = s.name()?;
        touched.push(to.clone());
        return spec(Spec::Rename(to));
    }
    if s.eat("ALTER") {
        // ALTER [COLUMN] c SET DEFAULT x / DROP DEFAULT change the default; SET
        // [IN]VISIBLE and ALTER INDEX/CHECK/CONSTRAINT/KEY change no column.
        if s.is_any(&["INDEX", "KEY", "CHECK", "CONSTRAINT"]) {
            s.skip_element();
            return Ok(Ignored);
        }
        let _ = s.eat("COLUMN");
        let column = s.ident()?;
        if s.eat_all(&["SET", "DEFAULT"]) {
            let default =
                s.p.parse_expr()
                    .map(|e| default_of(&e))
                    .unwrap_or(ColumnDefault::Unknown);
            s.skip_element();
            return spec(Spec::SetDefault {
                column,
                default: Some(default),
            });
        }
        if s.eat_all(&["DROP", "DEFAULT"]) {
            s.skip_element();
            return spec(Spec::SetDefault {
                column,
                default: None,
            });
        }
        s.skip_element();
        return Ok(Ignored);
    }
    if s.eat("CONVERT") {
        if s.eat("TO") {
            if !s.eat_charset_keyword() {
                return Err(s.unexpected("after CONVERT TO"));
            }
            let charset = s.charset_name()?;
            if s.eat("COLLATE") {
                s.skip_eq();
                s.ident()?;
            }
            return spec(Spec::Convert(charset));
        }
        if s.eat("PARTITION") {
            s.ident()?;
            s.expect("TO")?;
            s.expect("TABLE")?;
            let to = s.name()?;
            touched.push(to.clone());
            return spec(Spec::ConvertPartitionToTable(to));
        }
        if s.eat("TABLE") {
            let from = s.name()?;
            touched.push(from.clone());
            s.skip_element();
            return spec(Spec::ConvertTableToPartition(from));
        }
        return Err(s.unexpected("after CONVERT"));
    }
    // Table options: [DEFAULT] CHARACTER SET / COLLATE change the default for new columns.
    let had_default = s.eat("DEFAULT");
    if s.eat_charset_keyword() {
        let charset = s.charset_name()?;
        if s.eat("COLLATE") {
            s.skip_eq();
            s.ident()?;
        }
        return spec(Spec::DefaultCharset(charset));
    }
    if s.eat("COLLATE") {
        s.skip_eq();
        let collation = s.ident()?;
        return Ok(match charset_of_collation(&collation) {
            Some(cs) => SpecParse::Spec(Spec::DefaultCharset(Some(cs))),
            None => Ignored,
        });
    }
    if had_default {
        return Err(s.unexpected("after DEFAULT"));
    }
    if s.eat("ORDER") {
        s.expect("BY")?;
        loop {
            s.ident()?;
            let _ = s.eat("ASC") || s.eat("DESC");
            if !matches!(s.peek(), Token::Comma) || s.is_spec_start_after_comma() {
                break;
            }
            s.p.next_token();
        }
        return Ok(Ignored);
    }
    if s.is_any(&["WITH"]) {
        if s.word_at(1)
            .is_some_and(|w| w.eq_ignore_ascii_case("SYSTEM"))
        {
            return Err("WITH SYSTEM VERSIONING is not supported".into());
        }
        s.skip_element();
        return Ok(Ignored);
    }
    if s.is_any(&["DISCARD", "IMPORT"])
        && s.word_at(1)
            .is_some_and(|w| w.eq_ignore_ascii_case("PARTITION"))
    {
        return Ok(IgnoreRest);
    }
    if s.is_any(IGNORED_ALTER_SPECS) {
        s.skip_element();
        return Ok(Ignored);
    }
    if s.is_any(PARTITION_SPECS) {
        return Ok(IgnoreRest);
    }
    Err(s.unexpected("as an ALTER TABLE specification"))
}

impl Sql<'_> {
    /// In `ORDER BY a, b`, whether what follows the comma is a new specification rather
    /// than another column.
    fn is_spec_start_after_comma(&self) -> bool {
        const STARTS: &[&str] = &[
            "ADD",
            "DROP",
            "MODIFY",
            "CHANGE",
            "RENAME",
            "ALTER",
            "CONVERT",
            "DEFAULT",
            "CHARACTER",
            "CHARSET",
            "COLLATE",
        ];
        match &self.p.peek_nth_token_ref(1).token {
            Token::Word(w) if w.quote_style.is_none() => STARTS
                .iter()
                .chain(IGNORED_ALTER_SPECS)
                .any(|x| w.value.eq_ignore_ascii_case(x)),
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// information_schema.

/// Loads the current schemas of all base tables for which `include(db, table)` holds,
/// from `information_schema` (columns in ordinal order with `COLUMN_TYPE`, `IS_NULLABLE`
/// and `CHARACTER_SET_NAME`; the primary key from `STATISTICS` in key order; table and
/// database default charsets; views skipped), together with the server's flavour, default
/// charset and `lower_case_table_names`. A table with a column type binlake does not
/// support is left out with a warning (its events then fail to decode, naming it).
pub async fn load_from_information_schema(
    conn: &mut mysql_async::Conn,
    include: &dyn Fn(&str, &str) -> bool,
) -> Result<SchemaHistory, Error> {
    use mysql_async::prelude::Queryable;

    let target = {
        let o = conn.opts();
        format!(
            "{}@{}:{}",
            o.user().unwrap_or_default(),
            o.ip_or_hostname(),
            o.tcp_port()
        )
    };
    let q = |query: &str| Error::query(&target, query);

    const VARS: &str = "SELECT VERSION(), @@character_set_server, @@lower_case_table_names";
    let (version, server_charset, lower): (String, String, u32) = conn
        .query_first(VARS)
        .await
        .map_err(q(VARS))?
        .ok_or_else(|| Error::Unexpected {
            target: target.clone(),
            reason: format!("`{VARS}` returned no row"),
        })?;
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::Mysql
    };
    let mut history = SchemaHistory::with_flavor(flavor);
    history.set_server_charset(&server_charset);
    history.set_lower_case_table_names(lower == 1);

    const SCHEMATA: &str =
        "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA";
    let schemata: Vec<(String, String)> = conn.query(SCHEMATA).await.map_err(q(SCHEMATA))?;
    for (db, charset) in schemata {
        history.set_database_charset(&db, &charset);
    }

    const TABLES: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES \
        WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')";
    let tables: Vec<(String, String, Option<String>)> =
        conn.query(TABLES).await.map_err(q(TABLES))?;
    let mut table_charsets: BTreeMap<(String, String), Option<String>> = tables
        .into_iter()
        .filter(|(db, table, _)| include(db, table))
        .map(|(db, table, collation)| {
            (
                (db, table),
                collation.as_deref().and_then(charset_of_collation),
            )
        })
        .collect();

    const COLUMNS: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, \
        CHARACTER_SET_NAME, COLUMN_KEY, COLUMN_DEFAULT, EXTRA FROM information_schema.COLUMNS \
        WHERE TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema') \
        ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION";
    type ColumnRow = (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<ColumnRow> = conn.query(COLUMNS).await.map_err(q(COLUMNS))?;
    let mut schemas: BTreeMap<(String, String), Result<Vec<Column>, String>> = BTreeMap::new();
    // Columns the server marks PRI: of the declared primary key or, without one, of the
    // UNIQUE key it uses as primary key.
    let mut marked_primary: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (db, table, column, column_type, nullable, charset, column_key, default, extra) in rows {
        let key = (db, table);
        if !table_charsets.contains_key(&key) {
            continue;
        }
        if column_key.as_deref() == Some("PRI") {
            marked_primary
                .entry(key.clone())
                .or_default()
                .push(column.clone());
        }
        let columns = schemas.entry(key).or_insert_with(|| Ok(Vec::new()));
        if let Ok(cols) = columns {
            match parse_column_type(&column_type, charset.as_deref()) {
                Ok(ty) => {
                    let nullable = nullable.eq_ignore_ascii_case("YES");
                    let default = information_schema_default(
                        flavor,
                        default.as_deref(),
                        extra.as_deref().unwrap_or(""),
                        nullable,
                    );
                    let default = known_default(&ty, nullable, default);
                    cols.push(Column::new(column, ty, nullable).with_default(default));
                }
                Err(e) => *columns = Err(format!("column {column}: {e}")),
            }
        }
    }

    // MariaDB's JSON columns are LONGTEXT there; their column-level check is
    // `json_valid(`column`)`, which is what marks them (a table-level check does not: the
    // history does not follow those through DDL). `LEVEL` is 10.5.10+; before it, a
    // column-level check is named after its column (until the column is renamed).
    if flavor == Flavor::MariaDb {
        const CHECKS: &str = "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE \
            FROM information_schema.CHECK_CONSTRAINTS \
            WHERE LEVEL = 'Column' AND CHECK_CLAUSE LIKE 'json\\_valid(%'";
        const CHECKS_BEFORE_LEVEL: &str = "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE \
            FROM information_schema.CHECK_CONSTRAINTS WHERE CHECK_CLAUSE LIKE 'json\\_valid(%'";
        type CheckRow = (String, String, String, String);
        let (checks, by_level): (Vec<CheckRow>, bool) = match conn.query(CHECKS).await {
            Ok(rows) => (rows, true),
            Err(_) => (
                conn.query(CHECKS_BEFORE_LEVEL)
                    .await
                    .map_err(q(CHECKS_BEFORE_LEVEL))?,
                false,
            ),
        };
        for (db, table, name, clause) in checks {
            let Some(column) = json_valid_clause_column(&clause) else {
                continue;
            };
            if !by_level && !same_name(&name, &column) {
                continue;
            }
            if let Some(Ok(cols)) = schemas.get_mut(&(db, table))
                && let Some(c) = cols.iter_mut().find(|c| same_name(&c.name, &column))
            {
                set_json_marker(&mut c.ty, true);
            }
        }
    }

    // Unique indexes, in the server's key order (the order STATISTICS lists them in).
    const KEYS: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART \
        FROM information_schema.STATISTICS WHERE NON_UNIQUE = 0";
    type KeyRow = (String, String, String, u64, Option<String>, Option<u64>);
    let rows: Vec<KeyRow> = conn.query(KEYS).await.map_err(q(KEYS))?;
    type KeyParts = Vec<(u64, Option<String>, Option<u64>)>;
    let mut indexes: BTreeMap<(String, String), Vec<(String, KeyParts)>> = BTreeMap::new();
    for (db, table, index, seq, column, sub_part) in rows {
        let list = indexes.entry((db, table)).or_default();
        match list.iter_mut().find(|(name, _)| *name == index) {
            Some((_, parts)) => parts.push((seq, column, sub_part)),
            None => list.push((index, vec![(seq, column, sub_part)])),
        }
    }

    for (key, columns) in schemas {
        let columns = match columns {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(table = %format!("{}.{}", key.0, key.1), error = %e, "table left out of the schema history");
                continue;
            }
        };
        let mut primary = Vec::new();
        let mut unique_keys = Vec::new();
        for (name, mut parts) in indexes.remove(&key).unwrap_or_default() {
            parts.sort_by_key(|(seq, ..)| *seq);
            let partial = parts
                .iter()
                .any(|(_, column, sub_part)| column.is_none() || sub_part.is_some());
            let cols: Vec<String> = parts
                .into_iter()
                .filter_map(|(_, column, _)| column)
                .collect();
            if name == "PRIMARY" {
                primary = cols;
            } else {
                unique_keys.push(UniqueKey {
                    name,
                    columns: cols,
                    partial,
                });
            }
        }
        let implicit_primary_key = primary.is_empty();
        if implicit_primary_key {
            let marked = marked_primary.remove(&key).unwrap_or_default();
            let same_set = |cols: &[String]| {
                cols.len() == marked.len()
                    && cols.iter().all(|c| marked.iter().any(|m| same_name(c, m)))
            };
            if let Some(k) = unique_keys
                .iter()
                .find(|k| !k.partial && same_set(&k.columns))
            {
                primary = k.columns.clone();
            }
        }
        let mut primary_key = Vec::with_capacity(primary.len());
        for name in &primary {
            match columns.iter().position(|c| same_name(&c.name, name)) {
                Some(i) => primary_key.push(i),
                None => {
                    return Err(Error::Unexpected {
                        target: target.clone(),
                        reason: format!(
                            "primary key column {name} of {}.{} is not among its columns",
                            key.0, key.1
                        ),
                    });
                }
            }
        }
        let charset = table_charsets.remove(&key).flatten();
        let entry = Entry {
            schema: TableSchema {
                database: history.fold(&key.0),
                table: history.fold(&key.1),
                columns,
                primary_key,
            },
            charset,
            implicit_primary_key: implicit_primary_key && !primary.is_empty(),
            unique_keys,
        };
        history.tables.insert(
            (entry.schema.database.clone(), entry.schema.table.clone()),
            entry,
        );
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn int(bits: u8, unsigned: bool) -> ColumnType {
        ColumnType::Integer { bits, unsigned }
    }

    fn text(kind: StringKind, length: u32, charset: &str) -> ColumnType {
        ColumnType::String {
            kind,
            length,
            charset: charset.into(),
            json: false,
        }
    }

    fn bytes(kind: StringKind, length: u32) -> ColumnType {
        ColumnType::Bytes { kind, length }
    }

    fn types(h: &SchemaHistory, db: &str, table: &str) -> Vec<(String, ColumnType, bool)> {
        h.get(db, table)
            .unwrap_or_else(|| panic!("{db}.{table} unknown"))
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.clone(), c.nullable))
            .collect()
    }

    fn names(h: &SchemaHistory, db: &str, table: &str) -> Vec<String> {
        h.get(db, table)
            .unwrap_or_else(|| panic!("{db}.{table} unknown"))
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    fn pk(h: &SchemaHistory, db: &str, table: &str) -> Vec<String> {
        h.get(db, table)
            .map(|s| s.key_columns().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    }

    fn apply(h: &mut SchemaHistory, ddl: &str) -> Vec<(String, String)> {
        h.apply_ddl("d", ddl).unwrap_or_else(|e| panic!("{e}"))
    }

    fn key(db: &str, t: &str) -> (String, String) {
        (db.into(), t.into())
    }

    #[test]
    fn defaults_are_known_where_binlake_converts_them_exactly() {
        use ColumnDefault::{Literal, Null, Unknown};
        let mut h = SchemaHistory::with_flavor(Flavor::MariaDb);
        apply(
            &mut h,
            "CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL DEFAULT 7, b int DEFAULT -3,
                c varchar(9) DEFAULT 'it''s', d text, e int NOT NULL, f enum('x','y') DEFAULT 'y',
                g datetime DEFAULT CURRENT_TIMESTAMP, h decimal(5,2) DEFAULT 1.5,
                i char(3) DEFAULT 'ab', j timestamp NULL DEFAULT NULL, k int AUTO_INCREMENT UNIQUE,
                l int AS (a + 1), m varchar(5) DEFAULT (concat('a', 'b')) COLLATE utf8mb4_bin)",
        );
        let defaults = |h: &SchemaHistory| -> Vec<ColumnDefault> {
            h.get("d", "t")
                .unwrap()
                .columns
                .iter()
                .map(|c| c.default.clone())
                .collect()
        };
        let lit = |t: &str| Literal(t.into());
        assert_eq!(
            defaults(&h),
            [
                Unknown, // the key: NOT NULL without a default
                lit("7"),
                lit("-3"),
                lit("it's"),
                Null,
                Unknown,
                lit("y"),
                Unknown, // an expression
                Unknown, // DECIMAL: not converted
                Unknown, // CHAR: padded by the server
                Unknown, // TIMESTAMP: settings decide
                Unknown, // AUTO_INCREMENT
                Unknown, // generated
                Unknown, // an expression
            ]
        );
        apply(
            &mut h,
            "ALTER TABLE t ALTER COLUMN a SET DEFAULT 8, ALTER b DROP DEFAULT, ALTER d SET DEFAULT 'z',
                ALTER COLUMN c SET DEFAULT upper('u'), ALTER INDEX k INVISIBLE",
        );
        let d = defaults(&h);
        assert_eq!(&d[1..5], [lit("8"), Null, Unknown, lit("z")]);
        // MODIFY redefines the column, its default included.
        apply(&mut h, "ALTER TABLE t MODIFY a int NOT NULL");
        assert_eq!(defaults(&h)[1], Unknown);
        // information_schema's forms.
        let is = |f, d: Option<&str>, extra: &str, nullable| {
            information_schema_default(f, d, extra, nullable)
        };
        assert_eq!(is(Flavor::MariaDb, Some("'it''s'"), "", true), lit("it's"));
        assert_eq!(is(Flavor::MariaDb, Some("-3"), "", true), lit("-3"));
        assert_eq!(is(Flavor::MariaDb, Some("NULL"), "", true), Null);
        assert_eq!(is(Flavor::MariaDb, None, "", false), Unknown);
        assert_eq!(
            is(Flavor::MariaDb, Some("current_timestamp()"), "", true),
            Unknown
        );
        assert_eq!(
            is(Flavor::MariaDb, None, "VIRTUAL GENERATED", true),
            Unknown
        );
        assert_eq!(is(Flavor::Mysql, Some("it's"), "", true), lit("it's"));
        assert_eq!(is(Flavor::Mysql, None, "", true), Null);
        assert_eq!(
            is(Flavor::Mysql, Some("now()"), "DEFAULT_GENERATED", true),
            Unknown
        );
        assert_eq!(is(Flavor::Mysql, None, "auto_increment", false), Unknown);
    }

    #[test]
    fn a_script_of_ddl_defines_its_tables() {
        let mut h = SchemaHistory::with_flavor(Flavor::MariaDb);
        let script = "-- a mysqldump --no-data file\n\
            /*!40101 SET @saved_cs_client = @@character_set_client */;\n\
            CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop`;\n\
            USE `shop`;\n\
            DROP TABLE IF EXISTS `orders`;\n\
            CREATE TABLE `orders` (\n  `id` int(11) NOT NULL,\n  `note` varchar(20) DEFAULT 'a;b',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n\
            CREATE TABLE other.t (k BIGINT PRIMARY KEY); # trailing comment\n";
        h.apply_script("", script).unwrap();
        let orders = h.get("shop", "orders").expect("shop.orders");
        let names: Vec<&str> = orders.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "note"]);
        assert_eq!(orders.primary_key, vec![0]);
        assert!(h.get("other", "t").is_some());
        let err = h
            .apply_script(
                "shop",
                "CREATE TABLE a (id INT PRIMARY KEY);\nCREATE TABLE b (id FROB);",
            )
            .unwrap_err();
        assert!(err.starts_with("line 2: "), "{err}");
    }

    #[test]
    fn statements_that_change_existing_rows_say_so() {
        use crate::binlog::SchemaLookup;
        let mut h = SchemaHistory::with_flavor(Flavor::MariaDb);
        apply(
            &mut h,
            "CREATE TABLE t (id INT PRIMARY KEY, a INT, b VARCHAR(5))",
        );
        let mut rewrites = |ddl: &str| {
            // (A statement that leaves the schema as it was changes no table.)
            let changes = SchemaLookup::apply_ddl(&mut h, "d", ddl);
            assert!(changes.len() <= 1, "{ddl}");
            changes.first().is_some_and(|c| c.rewrites_rows)
        };
        for (ddl, want) in [
            ("ALTER TABLE t ADD COLUMN c1 INT", false),
            ("ALTER TABLE t ADD COLUMN c2 INT NULL DEFAULT NULL", false),
            ("ALTER TABLE t ADD c3 VARCHAR(3) DEFAULT (NULL)", false),
            ("ALTER TABLE t ADD COLUMN c4 INT DEFAULT 5", true),
            (
                "ALTER TABLE t ADD COLUMN c5 VARCHAR(3) DEFAULT 'x' COLLATE utf8mb4_bin",
                true,
            ),
            ("ALTER TABLE t ADD COLUMN c6 INT NOT NULL", true),
            ("ALTER TABLE t ADD COLUMN c7 INT AS (id * 2) STORED", true),
            (
                "ALTER TABLE t ADD COLUMN c8 TIMESTAMP DEFAULT current_timestamp()",
                true,
            ),
            ("ALTER TABLE t ADD (c9 INT, c10 INT DEFAULT 1)", true),
            ("ALTER TABLE t ADD COLUMN c11 SERIAL", true),
            (
                "ALTER TABLE t ADD COLUMN c12 BIGINT AUTO_INCREMENT UNIQUE",
                true,
            ),
            ("ALTER TABLE t DROP COLUMN c1", false),
            ("ALTER TABLE t CHANGE a a2 INT", false),
            ("ALTER TABLE t MODIFY a2 INT COMMENT 'x'", false),
            ("ALTER TABLE t MODIFY a2 BIGINT", false),
            ("ALTER TABLE t MODIFY a2 BIGINT NOT NULL", true),
            ("ALTER TABLE t MODIFY a2 BIGINT NULL", false),
            ("ALTER TABLE t MODIFY a2 SMALLINT", true),
            ("ALTER TABLE t MODIFY a2 DOUBLE", true),
            ("ALTER TABLE t MODIFY a2 DECIMAL(6,2)", true),
            ("ALTER TABLE t MODIFY a2 DECIMAL(12,4)", false),
            ("ALTER TABLE t MODIFY a2 DECIMAL(14,4)", false),
            ("ALTER TABLE t MODIFY a2 DECIMAL(14,2)", true),
            ("ALTER TABLE t MODIFY b VARCHAR(10)", false),
            ("ALTER TABLE t MODIFY b TEXT", false),
            (
                "ALTER TABLE t MODIFY b VARCHAR(10) CHARACTER SET latin1",
                true,
            ),
            ("ALTER TABLE t MODIFY b CHAR(10)", true),
            ("ALTER TABLE t MODIFY b VARCHAR(20)", false),
            ("ALTER TABLE t ADD bin BINARY(4)", false),
            ("ALTER TABLE t MODIFY bin BINARY(8)", true),
            ("ALTER TABLE t MODIFY bin VARBINARY(8)", false),
            ("ALTER TABLE t ADD e ENUM('a','b')", false),
            ("ALTER TABLE t MODIFY e ENUM('a','b','c')", false),
            ("ALTER TABLE t MODIFY e ENUM('c','a','b')", true),
            ("ALTER TABLE t RENAME COLUMN b TO b2", false),
            ("ALTER TABLE t ADD INDEX (b2)", false),
        ] {
            assert_eq!(rewrites(ddl), want, "{ddl}");
        }
        // A rename gives the target name another table's rows (an online schema change's
        // swap, or a plain rename); the old name is gone.
        apply(&mut h, "CREATE TABLE t_new (id INT PRIMARY KEY)");
        let summary = |changes: Vec<TableChange>| {
            let mut v: Vec<(String, TableChangeKind, bool, bool)> = changes
                .into_iter()
                .map(|c| (c.table, c.kind, c.replaced, c.rewrites_rows))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        use TableChangeKind::{Alter, Create, Drop};
        assert_eq!(
            summary(SchemaLookup::apply_ddl(
                &mut h,
                "d",
                "RENAME TABLE t TO t_old, t_new TO t"
            )),
            [
                ("t".into(), Alter, true, true),
                ("t_new".into(), Drop, false, false),
                ("t_old".into(), Create, true, true),
            ]
        );
        assert_eq!(
            summary(SchemaLookup::apply_ddl(
                &mut h,
                "d",
                "ALTER TABLE t_old RENAME TO t2, ADD x INT"
            )),
            [
                ("t2".into(), Create, true, true),
                ("t_old".into(), Drop, false, false)
            ]
        );
        let one = |ddl: &str, h: &mut SchemaHistory| summary(SchemaLookup::apply_ddl(h, "d", ddl));
        assert_eq!(
            one("CREATE OR REPLACE TABLE t2 (id INT PRIMARY KEY)", &mut h),
            [("t2".into(), Alter, true, true)]
        );
        assert_eq!(
            one("CREATE TABLE t3 (id INT PRIMARY KEY)", &mut h),
            [("t3".into(), Create, false, false)]
        );
        // Unknown to the history, maybe existing on the server: read, not just truncated.
        assert_eq!(
            one("CREATE TABLE IF NOT EXISTS t4 (id INT PRIMARY KEY)", &mut h),
            [("t4".into(), Create, true, true)]
        );
        // A statement that changes the key replaces the table (rows keyed anew); one that
        // keeps it does not.
        apply(
            &mut h,
            "CREATE TABLE k (k1 INT NOT NULL, k2 INT NOT NULL, v INT, PRIMARY KEY (k1, k2))",
        );
        for (ddl, replaced) in [
            ("ALTER TABLE k ADD w INT", false),
            ("ALTER TABLE k MODIFY k1 BIGINT NOT NULL", false),
            ("ALTER TABLE k DROP COLUMN k2", true),
            (
                "ALTER TABLE k DROP PRIMARY KEY, ADD PRIMARY KEY (k1, v)",
                true,
            ),
            ("ALTER TABLE k RENAME COLUMN v TO v2", true),
            ("ALTER TABLE k DROP PRIMARY KEY", true),
            ("ALTER TABLE k ADD PRIMARY KEY (k1)", true),
        ] {
            let changes = one(ddl, &mut h);
            assert_eq!(changes.len(), 1, "{ddl}");
            assert_eq!(changes[0].2, replaced, "{ddl}");
        }
    }

    #[test]
    fn numeric_and_temporal_types() {
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE IF NOT EXISTS `d`.`num` (
                a tinyint(1), b smallint unsigned zerofill, c mediumint(8) unsigned, d int(11) unsigned zerofill NOT NULL,
                e bigint(20) unsigned, f integer, g int zerofill, h int signed, i bool, j boolean, k int1, l int3, m middleint,
                n int8, o float, p float(7,3) unsigned, q float(30), r double, s double precision unsigned, t real,
                u decimal, v decimal(10,2) unsigned, w numeric(5), x dec(65,30), y fixed(4,1),
                z bit, ba bit(5), bb bit(64), bc date, bd time, be time(3), bf datetime(6), bg timestamp(6) NULL,
                bh year, bi year(4), bj serial, bk datetime
            ) ENGINE=InnoDB",
        );
        use ColumnType as T;
        let expected = vec![
            ("a", int(8, false), true),
            ("b", int(16, true), true),
            ("c", int(24, true), true),
            ("d", int(32, true), false),
            ("e", int(64, true), true),
            ("f", int(32, false), true),
            ("g", int(32, true), true),
            ("h", int(32, false), true),
            ("i", int(8, false), true),
            ("j", int(8, false), true),
            ("k", int(8, false), true),
            ("l", int(24, false), true),
            ("m", int(24, false), true),
            ("n", int(64, false), true),
            ("o", T::Float, true),
            ("p", T::Float, true),
            ("q", T::Double, true),
            ("r", T::Double, true),
            ("s", T::Double, true),
            ("t", T::Double, true),
            (
                "u",
                T::Decimal {
                    precision: 10,
                    scale: 0,
                },
                true,
            ),
            (
                "v",
                T::Decimal {
                    precision: 10,
                    scale: 2,
                },
                true,
            ),
            (
                "w",
                T::Decimal {
                    precision: 5,
                    scale: 0,
                },
                true,
            ),
            (
                "x",
                T::Decimal {
                    precision: 65,
                    scale: 30,
                },
                true,
            ),
            (
                "y",
                T::Decimal {
                    precision: 4,
                    scale: 1,
                },
                true,
            ),
            ("z", T::Bit { width: 1 }, true),
            ("ba", T::Bit { width: 5 }, true),
            ("bb", T::Bit { width: 64 }, true),
            ("bc", T::Date, true),
            ("bd", T::Time { fsp: 0 }, true),
            ("be", T::Time { fsp: 3 }, true),
            ("bf", T::DateTime { fsp: 6 }, true),
            ("bg", T::Timestamp { fsp: 6 }, true),
            ("bh", T::Year, true),
            ("bi", T::Year, true),
            ("bj", int(64, true), false),
            ("bk", T::DateTime { fsp: 0 }, true),
        ];
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(n, t, null)| (n.to_string(), t, null))
            .collect();
        assert_eq!(types(&h, "d", "num"), expected);
    }

    #[test]
    fn string_types_and_charsets() {
        let mut h = SchemaHistory::new();
        apply(&mut h, "CREATE DATABASE d DEFAULT CHARACTER SET = latin1");
        apply(
            &mut h,
            "CREATE TABLE t (
                a char(10), b varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, c tinytext, d text, e mediumtext,
                f longtext charset utf8, g binary(3), h varbinary(10), i tinyblob, j blob, k mediumblob, l longblob,
                m char, n char(5) binary, o varchar(5) character set binary, p text character set binary,
                q varchar(7) COLLATE utf8mb4_unicode_ci, r national char(3), s nchar(4), t nvarchar(5),
                u national varchar(6), v long, w long varchar, x long varbinary, y text(100), z blob(300),
                ba text(100) charset utf8mb4, bb char(2) ascii, bc char(2) unicode, bd binary,
                be varchar(3) DEFAULT 'x' COLLATE cp1251_bin, bf char(4) CHARACTER SET 'koi8r'
            )",
        );
        use StringKind as K;
        let expected = vec![
            ("a", text(K::Char, 10, "latin1")),
            ("b", text(K::VarChar, 20, "utf8mb4")),
            ("c", text(K::Tiny, 255, "latin1")),
            ("d", text(K::Text, 65_535, "latin1")),
            ("e", text(K::Medium, 16_777_215, "latin1")),
            ("f", text(K::Long, u32::MAX, "utf8mb3")),
            ("g", bytes(K::Char, 3)),
            ("h", bytes(K::VarChar, 10)),
            ("i", bytes(K::Tiny, 255)),
            ("j", bytes(K::Text, 65_535)),
            ("k", bytes(K::Medium, 16_777_215)),
            ("l", bytes(K::Long, u32::MAX)),
            ("m", text(K::Char, 1, "latin1")),
            ("n", text(K::Char, 5, "latin1")),
            ("o", bytes(K::VarChar, 5)),
            ("p", bytes(K::Text, 65_535)),
            ("q", text(K::VarChar, 7, "utf8mb4")),
            ("r", text(K::Char, 3, "utf8mb3")),
            ("s", text(K::Char, 4, "utf8mb3")),
            ("t", text(K::VarChar, 5, "utf8mb3")),
            ("u", text(K::VarChar, 6, "utf8mb3")),
            ("v", text(K::Medium, 16_777_215, "latin1")),
            ("w", text(K::Medium, 16_777_215, "latin1")),
            ("x", bytes(K::Medium, 16_777_215)),
            ("y", text(K::Tiny, 255, "latin1")),
            ("z", bytes(K::Text, 65_535)),
            ("ba", text(K::Text, 65_535, "utf8mb4")),
            ("bb", text(K::Char, 2, "latin1")),
            ("bc", text(K::Char, 2, "ucs2")),
            ("bd", bytes(K::Char, 1)),
            ("be", text(K::VarChar, 3, "cp1251")),
            ("bf", text(K::Char, 4, "koi8r")),
        ];
        let got: Vec<_> = types(&h, "d", "t")
            .into_iter()
            .map(|(n, t, _)| (n, t))
            .collect();
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn other_types() {
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE o (a enum('a','b''c', 'd\\'e', ''), b set('x','y') CHARACTER SET latin1, c json,
                g geometry, p point NOT NULL SRID 4326, l linestring, pg polygon, mp multipoint, ml multilinestring,
                mg multipolygon, gc geometrycollection, gc2 geomcollection, u uuid, i6 inet6, i4 inet4)",
        );
        let t = types(&h, "d", "o");
        assert_eq!(
            t[0].1,
            ColumnType::Enum {
                members: vec!["a".into(), "b'c".into(), "d'e".into(), String::new()]
            }
        );
        assert_eq!(
            t[1].1,
            ColumnType::Set {
                members: vec!["x".into(), "y".into()]
            }
        );
        assert_eq!(t[2].1, ColumnType::Json);
        let kinds: Vec<_> = t[3..11]
            .iter()
            .map(|(_, ty, _)| match ty {
                ColumnType::Geometry { kind } => kind.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "geometry",
                "point",
                "linestring",
                "polygon",
                "multipoint",
                "multilinestring",
                "multipolygon",
                "geometrycollection"
            ]
        );
        assert!(!t[4].2, "NOT NULL");
        assert_eq!(
            t[11].1,
            ColumnType::Geometry {
                kind: "geometrycollection".into()
            }
        );
        assert_eq!(t[12].1, bytes(StringKind::Char, 16));
        assert_eq!(t[13].1, bytes(StringKind::Char, 16));
        assert_eq!(t[14].1, bytes(StringKind::Char, 4));

        // MariaDB's JSON is LONGTEXT in utf8mb4, marked as JSON.
        let mut m = SchemaHistory::with_flavor(Flavor::MariaDb);
        m.apply_ddl("d", "CREATE TABLE j (c json CHECK (json_valid(c)))")
            .unwrap();
        assert_eq!(types(&m, "d", "j")[0].1, mariadb_json("utf8mb4"));
    }

    fn mariadb_json(charset: &str) -> ColumnType {
        ColumnType::String {
            kind: StringKind::Long,
            length: u32::MAX,
            charset: charset.into(),
            json: true,
        }
    }

    /// MariaDB's JSON is a LONGTEXT whose column-level check is `json_valid(column)`: the
    /// history marks exactly the columns `information_schema` shows that way (declared
    /// JSON without a CHECK of its own, or LONGTEXT with that check), and follows them
    /// through MODIFY, CHANGE, RENAME COLUMN and CONVERT TO CHARACTER SET as the server
    /// does (checked against MariaDB 10.11 in `tests/it/schema_history.rs`).
    #[test]
    fn mariadb_json_columns_are_marked() {
        let mut m = SchemaHistory::with_flavor(Flavor::MariaDb);
        m.set_server_charset("utf8mb4");
        apply(
            &mut m,
            "CREATE TABLE js (id int PRIMARY KEY, a json, b longtext CHECK (json_valid(`b`)),
                c json CHECK (json_length(c) > 0), d longtext, e text CHECK (json_valid(e)),
                f JSON NOT NULL DEFAULT '{}', h longtext CHECK (json_valid(a)),
                CONSTRAINT tc CHECK (json_valid(d)))",
        );
        let json = |m: &SchemaHistory| -> Vec<String> {
            types(m, "d", "js")
                .into_iter()
                .filter(|(_, ty, _)| ty.is_json())
                .map(|(n, ty, _)| {
                    assert_eq!(ty.sql_name(), "json");
                    assert_eq!(ty.storage_sql_name(), "longtext");
                    n
                })
                .collect()
        };
        assert_eq!(json(&m), ["a", "b", "f"]);
        assert_eq!(types(&m, "d", "js")[1].1, mariadb_json("utf8mb4"));
        assert_eq!(
            types(&m, "d", "js")[4].1,
            text(StringKind::Long, u32::MAX, "utf8mb4")
        );

        let changes = crate::binlog::SchemaLookup::apply_ddl(
            &mut m,
            "d",
            "ALTER TABLE js MODIFY a longtext, CHANGE d d2 json, ADD g json AFTER id, RENAME COLUMN b TO b2",
        );
        assert_eq!(json(&m), ["g", "b2", "d2", "f"]);
        // Same text either way: no row is rewritten.
        assert!(!changes[0].rewrites_rows, "{changes:?}");

        m.apply_ddl("d", "ALTER TABLE js CONVERT TO CHARACTER SET latin1")
            .unwrap();
        assert_eq!(json(&m), ["g", "b2", "d2", "f"]);
        assert_eq!(types(&m, "d", "js")[1].1, mariadb_json("latin1"));

        // MySQL's JSON is its own type.
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE js (a json, b longtext CHECK (json_valid(b)))",
        );
        assert_eq!(types(&h, "d", "js")[0].1, ColumnType::Json);
        assert_eq!(
            types(&h, "d", "js")[1].1,
            text(StringKind::Long, u32::MAX, "utf8mb4")
        );

        for (clause, column) in [
            ("json_valid(`j`)", Some("j")),
            ("JSON_VALID(`a b`)", Some("a b")),
            ("json_valid(`j`) and `j` <> '[]'", None),
            ("json_length(`n`) > 0", None),
            ("json_valid(`j`, 1)", None),
            ("json_valid(", None),
        ] {
            assert_eq!(
                json_valid_clause_column(clause).as_deref(),
                column,
                "{clause}"
            );
        }
    }

    /// Histories recorded before the JSON marker existed load, unmarked; marked ones
    /// round-trip.
    #[test]
    fn histories_without_the_json_marker_load() {
        let mut h = SchemaHistory::with_flavor(Flavor::MariaDb);
        h.set_server_charset("utf8mb4");
        apply(&mut h, "CREATE TABLE t (id int PRIMARY KEY, j json)");
        let json = h.to_json();
        assert!(json.contains(r#""json":true"#), "{json}");
        let back = SchemaHistory::from_json(&json).unwrap();
        assert_eq!(back, h);
        assert!(back.marks_json());
        let recorded_before = json
            .replace(r#","json":true"#, "")
            .replace(r#","marks_json":true"#, "");
        assert!(
            !recorded_before.contains("json\":true"),
            "{recorded_before}"
        );
        let mut old = SchemaHistory::from_json(&recorded_before).unwrap();
        assert!(!old.marks_json());
        assert_eq!(
            old.get("d", "t").unwrap().columns[1].ty,
            text(StringKind::Long, u32::MAX, "utf8mb4")
        );
        // The markers of today's schemas (information_schema) are taken over once.
        assert_eq!(old.adopt_json_markers(&h), 1);
        assert_eq!(old, h);
        assert_eq!(old.adopt_json_markers(&h), 0);
    }

    #[test]
    fn generated_invisible_and_attributes() {
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE t(id INT PRIMARY KEY AUTO_INCREMENT,
               json_col JSON,
               name VARCHAR(100) AS (json_col->>'$.name'),
               age INT AS (json_col->'$.age') STORED,
               g int GENERATED ALWAYS AS (id * 2) VIRTUAL NOT NULL,
               p int AS (id + 1) PERSISTENT,
               i int INVISIBLE,
               v int VISIBLE COMMENT 'x, y' COLUMN_FORMAT FIXED STORAGE DISK,
               ts timestamp(6) NOT NULL DEFAULT current_timestamp(6) ON UPDATE current_timestamp(6),
               bits bit(8) DEFAULT b'0', hex binary(2) DEFAULT x'00ff', n int DEFAULT -1 CHECK (n > -5),
               r int REFERENCES other(x) ON DELETE CASCADE, u varchar(36) DEFAULT (uuid()) UNIQUE KEY,
               intro varchar(3) DEFAULT _utf8mb4'x',
               KEY k (g), UNIQUE KEY (age), CONSTRAINT fk FOREIGN KEY (i) REFERENCES o(x), CHECK (i > 0),
               FULLTEXT KEY ft (name) WITH PARSER ngram, INDEX USING BTREE (id, g) COMMENT 'c' INVISIBLE
             ) ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci ROW_FORMAT=DYNAMIC
             /*!50100 PARTITION BY HASH (id) PARTITIONS 4 */",
        );
        assert_eq!(
            names(&h, "d", "t"),
            [
                "id", "json_col", "name", "age", "g", "p", "i", "v", "ts", "bits", "hex", "n", "r",
                "u", "intro"
            ]
        );
        assert_eq!(pk(&h, "d", "t"), ["id"]);
        let t = types(&h, "d", "t");
        assert!(!t[0].2 && !t[4].2 && !t[8].2 && t[2].2);
    }

    #[test]
    fn primary_keys() {
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE p1 (a int, b varchar(3), c int, PRIMARY KEY (c, a))",
        );
        assert_eq!(pk(&h, "d", "p1"), ["c", "a"]);
        assert_eq!(
            h.get("d", "p1").map(|s| s.primary_key.clone()),
            Some(vec![2, 0])
        );
        assert!(
            !types(&h, "d", "p1")[2].2,
            "primary-key columns are NOT NULL"
        );
        apply(
            &mut h,
            "CREATE TABLE p2 (a int, b varchar(300), CONSTRAINT `pk` PRIMARY KEY USING BTREE (b(10) DESC, `A`) COMMENT 'k')",
        );
        assert_eq!(pk(&h, "d", "p2"), ["b", "a"]);
        apply(&mut h, "CREATE TABLE p3 (a int KEY, b int)");
        assert_eq!(pk(&h, "d", "p3"), ["a"]);
        apply(&mut h, "CREATE TABLE p4 (a int, b int, UNIQUE KEY (a))");
        assert!(pk(&h, "d", "p4").is_empty());
        apply(&mut h, "ALTER TABLE p4 ADD CONSTRAINT PRIMARY KEY (b, a)");
        assert_eq!(pk(&h, "d", "p4"), ["b", "a"]);
        apply(
            &mut h,
            "ALTER TABLE p4 DROP PRIMARY KEY, ADD PRIMARY KEY (a)",
        );
        assert_eq!(pk(&h, "d", "p4"), ["a"]);
        apply(&mut h, "ALTER TABLE p4 DROP INDEX `PRIMARY`");
        // `a` stayed NOT NULL: its UNIQUE key is now the primary key the server uses.
        assert_eq!(pk(&h, "d", "p4"), ["a"]);
        apply(&mut h, "ALTER TABLE p4 DROP KEY a");
        assert!(pk(&h, "d", "p4").is_empty());
        apply(&mut h, "ALTER TABLE p1 DROP COLUMN a");
        assert_eq!(pk(&h, "d", "p1"), ["c"]);
        apply(&mut h, "ALTER TABLE p1 CHANGE c cc bigint");
        assert_eq!(pk(&h, "d", "p1"), ["cc"]);
        assert!(
            h.apply_ddl("d", "CREATE TABLE p5 (a int, PRIMARY KEY (b))")
                .is_err()
        );
    }

    #[test]
    fn unique_keys_as_primary_key() {
        let mut h = SchemaHistory::new();
        // The first UNIQUE key with only NOT NULL columns, no prefix, not on TEXT/BLOB.
        apply(
            &mut h,
            "CREATE TABLE u (a int NOT NULL, b int, c varchar(20) NOT NULL, t text NOT NULL, \
             UNIQUE KEY ub (b), UNIQUE KEY ut (t(10)), UNIQUE (t), UNIQUE KEY uc (c(5)), \
             CONSTRAINT uac UNIQUE (a, c))",
        );
        assert_eq!(pk(&h, "d", "u"), ["a", "c"]);
        apply(&mut h, "ALTER TABLE u MODIFY b int NOT NULL");
        assert_eq!(pk(&h, "d", "u"), ["b"]);
        apply(&mut h, "ALTER TABLE u ADD PRIMARY KEY (t(10))");
        assert_eq!(pk(&h, "d", "u"), ["t"]);
        apply(
            &mut h,
            "ALTER TABLE u DROP PRIMARY KEY, RENAME INDEX ub TO ub2",
        );
        assert_eq!(pk(&h, "d", "u"), ["b"]);
        apply(&mut h, "DROP INDEX ub2 ON u");
        assert_eq!(pk(&h, "d", "u"), ["a", "c"]);
        apply(&mut h, "ALTER TABLE u DROP COLUMN c");
        assert_eq!(pk(&h, "d", "u"), ["a"], "a key loses a dropped column");
        apply(&mut h, "ALTER TABLE u DROP INDEX uac");
        assert!(pk(&h, "d", "u").is_empty());
        apply(
            &mut h,
            "CREATE UNIQUE INDEX IF NOT EXISTS ux USING BTREE ON u (b DESC) ALGORITHM=INPLACE LOCK=NONE",
        );
        assert_eq!(pk(&h, "d", "u"), ["b"]);
        apply(&mut h, "ALTER TABLE u CHANGE b bb int NOT NULL");
        assert_eq!(pk(&h, "d", "u"), ["bb"]);
        // Inline UNIQUE, SERIAL and SERIAL DEFAULT VALUE declare keys too; a nullable one
        // does not qualify, a wide one is a hash key.
        apply(
            &mut h,
            "CREATE TABLE s1 (x int UNIQUE, y int NOT NULL UNIQUE KEY)",
        );
        assert_eq!(pk(&h, "d", "s1"), ["y"]);
        apply(&mut h, "CREATE TABLE s2 (x int, id serial)");
        assert_eq!(pk(&h, "d", "s2"), ["id"]);
        apply(
            &mut h,
            "CREATE TABLE s3 (x int NOT NULL SERIAL DEFAULT VALUE)",
        );
        assert_eq!(pk(&h, "d", "s3"), ["x"]);
        apply(
            &mut h,
            "CREATE TABLE s4 (v varchar(1000) NOT NULL UNIQUE) CHARSET utf8mb4",
        );
        assert!(pk(&h, "d", "s4").is_empty());
        // The key survives a JSON round trip.
        let back = SchemaHistory::from_json(&h.to_json()).unwrap();
        let mut back = back;
        back.apply_ddl("d", "ALTER TABLE u ADD z int").unwrap();
        assert_eq!(pk(&back, "d", "u"), ["bb"]);
    }

    #[test]
    fn ddl_sequence() {
        let mut h = SchemaHistory::new();
        assert_eq!(
            apply(
                &mut h,
                "CREATE TABLE `s`.`t1` (id int NOT NULL, a varchar(10), b int, PRIMARY KEY (id)) DEFAULT CHARSET=latin1"
            ),
            [key("s", "t1")]
        );
        assert_eq!(
            apply(
                &mut h,
                "ALTER TABLE s.t1 ADD COLUMN c int FIRST, ADD d text AFTER a, ADD COLUMN (e int, f char(2))"
            ),
            [key("s", "t1")]
        );
        assert_eq!(names(&h, "s", "t1"), ["c", "id", "a", "d", "b", "e", "f"]);
        assert_eq!(
            types(&h, "s", "t1")[3].1,
            text(StringKind::Text, 65_535, "latin1")
        );
        apply(&mut h, "ALTER TABLE s.t1 DROP COLUMN c, DROP b");
        assert_eq!(names(&h, "s", "t1"), ["id", "a", "d", "e", "f"]);
        apply(
            &mut h,
            "ALTER TABLE s.t1 MODIFY COLUMN a varchar(20) CHARACTER SET utf8mb4 NOT NULL AFTER e, MODIFY f int FIRST",
        );
        assert_eq!(names(&h, "s", "t1"), ["f", "id", "d", "e", "a"]);
        assert_eq!(
            types(&h, "s", "t1")[4],
            ("a".into(), text(StringKind::VarChar, 20, "utf8mb4"), false)
        );
        assert_eq!(types(&h, "s", "t1")[0].1, int(32, false));
        apply(
            &mut h,
            "ALTER TABLE s.t1 CHANGE COLUMN d dd varchar(5), CHANGE `E` ee bigint unsigned AFTER f",
        );
        assert_eq!(names(&h, "s", "t1"), ["f", "ee", "id", "dd", "a"]);
        assert_eq!(
            types(&h, "s", "t1")[3].1,
            text(StringKind::VarChar, 5, "latin1")
        );
        assert_eq!(types(&h, "s", "t1")[1].1, int(64, true));
        apply(
            &mut h,
            "ALTER TABLE s.t1 RENAME COLUMN dd TO d2, ALGORITHM=INPLACE, LOCK=NONE",
        );
        assert_eq!(names(&h, "s", "t1"), ["f", "ee", "id", "d2", "a"]);
        assert_eq!(pk(&h, "s", "t1"), ["id"]);
        // Index, constraint and option changes leave columns alone.
        let before = h.get("s", "t1").cloned();
        apply(
            &mut h,
            "ALTER TABLE s.t1 ADD INDEX idx (a), ADD UNIQUE KEY u (ee), DROP INDEX idx, ENGINE=InnoDB, \
             ADD CONSTRAINT fk FOREIGN KEY (f) REFERENCES x(y), DROP FOREIGN KEY fk, RENAME INDEX u TO u2, \
             ALTER COLUMN f SET DEFAULT 1, ALTER f DROP DEFAULT, COMMENT = 'a, b', FORCE, ORDER BY a, id",
        );
        assert_eq!(h.get("s", "t1").cloned(), before);

        assert_eq!(
            apply(&mut h, "RENAME TABLE s.t1 TO s.t2, s.t2 TO other.t3"),
            [
                key("s", "t1"),
                key("s", "t2"),
                key("s", "t2"),
                key("other", "t3")
            ]
        );
        assert!(h.get("s", "t1").is_none() && h.get("s", "t2").is_none());
        let t3 = h
            .get("other", "t3")
            .cloned()
            .unwrap_or_else(|| panic!("renamed"));
        assert_eq!((t3.database.as_str(), t3.table.as_str()), ("other", "t3"));
        // An unqualified new name is in the default database, as with RENAME TABLE.
        apply(&mut h, "ALTER TABLE other.t3 RENAME TO t4");
        assert!(h.get("d", "t4").is_some() && h.get("other", "t4").is_none());
        apply(&mut h, "ALTER TABLE d.t4 RENAME TO other.t4");
        assert!(h.get("other", "t4").is_some());
        apply(&mut h, "ALTER TABLE other.t4 RENAME AS `d`.`t5`");
        apply(&mut h, "ALTER TABLE t5 RENAME t6");
        assert_eq!(names(&h, "d", "t6"), ["f", "ee", "id", "d2", "a"]);
        assert_eq!(
            apply(
                &mut h,
                "DROP TABLE IF EXISTS t6, nothing /* generated by server */"
            ),
            [key("d", "t6")]
        );
        assert!(h.is_empty());
    }

    #[test]
    fn charsets_by_level() {
        let mut h = SchemaHistory::new();
        h.set_server_charset("latin1");
        apply(&mut h, "CREATE DATABASE a");
        apply(
            &mut h,
            "CREATE SCHEMA IF NOT EXISTS b DEFAULT CHARSET cp1251",
        );
        apply(&mut h, "CREATE DATABASE c COLLATE = utf8mb4_unicode_ci");
        apply(&mut h, "CREATE TABLE a.t (x varchar(1))");
        apply(&mut h, "CREATE TABLE b.t (x varchar(1))");
        apply(&mut h, "CREATE TABLE c.t (x varchar(1))");
        apply(
            &mut h,
            "CREATE TABLE c.u (x varchar(1)) COLLATE=latin2_general_ci",
        );
        let cs = |h: &SchemaHistory, db: &str, t: &str| match &types(h, db, t)[0].1 {
            ColumnType::String { charset, .. } => charset.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(cs(&h, "a", "t"), "latin1");
        assert_eq!(cs(&h, "b", "t"), "cp1251");
        assert_eq!(cs(&h, "c", "t"), "utf8mb4");
        assert_eq!(cs(&h, "c", "u"), "latin2");
        apply(&mut h, "ALTER DATABASE a CHARACTER SET utf8mb4");
        apply(&mut h, "CREATE TABLE a.u (x varchar(1))");
        assert_eq!(cs(&h, "a", "u"), "utf8mb4");
        // A table keeps its own default for later columns.
        apply(&mut h, "ALTER TABLE c.u ADD y text");
        assert_eq!(
            types(&h, "c", "u")[1].1,
            text(StringKind::Text, 65_535, "latin2")
        );
        apply(
            &mut h,
            "ALTER TABLE c.u DEFAULT CHARACTER SET = greek, ADD z char(1)",
        );
        assert_eq!(types(&h, "c", "u")[2].1, text(StringKind::Char, 1, "greek"));
        assert_eq!(
            types(&h, "c", "u")[0].1,
            text(StringKind::VarChar, 1, "latin2")
        );
        // Unknown database and server charset: utf8mb4.
        let mut fresh = SchemaHistory::new();
        fresh.apply_ddl("x", "CREATE TABLE t (a char(1))").unwrap();
        assert_eq!(
            types(&fresh, "x", "t")[0].1,
            text(StringKind::Char, 1, "utf8mb4")
        );
        assert_eq!(
            apply(&mut h, "DROP DATABASE c"),
            [key("c", "t"), key("c", "u")]
        );
        assert!(h.get("c", "t").is_none());
    }

    #[test]
    fn convert_to_charset() {
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE t (a varchar(10), b tinytext, c text, d mediumtext, e longtext, f varchar(20000), g blob, \
             h enum('x'), i int) CHARSET latin1",
        );
        apply(
            &mut h,
            "ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        );
        use StringKind as K;
        let t: Vec<_> = types(&h, "d", "t").into_iter().map(|(_, t, _)| t).collect();
        assert_eq!(t[0], text(K::VarChar, 10, "utf8mb4"));
        assert_eq!(t[1], text(K::Text, 65_535, "utf8mb4"));
        assert_eq!(t[2], text(K::Medium, 16_777_215, "utf8mb4"));
        assert_eq!(t[3], text(K::Long, u32::MAX, "utf8mb4"));
        assert_eq!(t[4], text(K::Long, u32::MAX, "utf8mb4"));
        assert_eq!(t[5], text(K::Medium, 16_777_215, "utf8mb4"));
        assert_eq!(t[6], bytes(K::Text, 65_535));
        assert_eq!(t[8], int(32, false));
        apply(&mut h, "ALTER TABLE t ADD j char(1)");
        assert_eq!(types(&h, "d", "t")[9].1, text(K::Char, 1, "utf8mb4"));
        apply(&mut h, "ALTER TABLE t CONVERT TO CHARSET binary");
        assert_eq!(types(&h, "d", "t")[0].1, bytes(K::VarChar, 10));
    }

    #[test]
    fn create_like_and_if_not_exists() {
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE t1 (a int PRIMARY KEY, b varchar(3)) CHARSET=latin1",
        );
        apply(&mut h, "CREATE TABLE t2 LIKE t1");
        apply(&mut h, "CREATE TABLE IF NOT EXISTS e.t3 (LIKE d.t1)");
        let mut t1 = h.get("d", "t1").cloned().unwrap_or_else(|| panic!("t1"));
        t1.table = "t2".into();
        assert_eq!(h.get("d", "t2"), Some(&t1));
        assert_eq!(names(&h, "e", "t3"), ["a", "b"]);
        assert_eq!(apply(&mut h, "CREATE TABLE IF NOT EXISTS t1 (z int)"), []);
        assert_eq!(names(&h, "d", "t1"), ["a", "b"]);
        apply(&mut h, "CREATE OR REPLACE TABLE t1 (z int)");
        assert_eq!(names(&h, "d", "t1"), ["z"]);
        // A copy of an unknown table is unknown.
        apply(&mut h, "CREATE TABLE t4 LIKE unknown_table");
        assert!(h.get("d", "t4").is_none());
    }

    #[test]
    fn mariadb_syntax() {
        let mut h = SchemaHistory::with_flavor(Flavor::MariaDb);
        apply(&mut h, "/*M!100100 CREATE TABLE m (a int) */");
        apply(
            &mut h,
            "ALTER ONLINE IGNORE TABLE m ADD COLUMN IF NOT EXISTS b int, ADD COLUMN IF NOT EXISTS a int",
        );
        apply(
            &mut h,
            "ALTER TABLE IF EXISTS m WAIT 5 DROP COLUMN IF EXISTS zz, MODIFY COLUMN IF EXISTS yy int",
        );
        assert_eq!(names(&h, "d", "m"), ["a", "b"]);
        apply(&mut h, "RENAME TABLE IF EXISTS m TO m2");
        apply(&mut h, "ALTER TABLE m2 CONVERT PARTITION p1 TO TABLE m3");
        assert_eq!(names(&h, "d", "m3"), ["a", "b"]);
        apply(
            &mut h,
            "ALTER TABLE m2 CONVERT TABLE m3 TO PARTITION p1 VALUES LESS THAN (10)",
        );
        assert!(h.get("d", "m3").is_none());
        let e = h
            .apply_ddl("d", "ALTER TABLE m2 ADD SYSTEM VERSIONING")
            .unwrap_err();
        assert!(
            e.contains("SYSTEM VERSIONING") && e.contains("d.m2 is now unknown"),
            "{e}"
        );
        assert!(h.get("d", "m2").is_none());
        assert!(
            h.apply_ddl("d", "CREATE TABLE v (a int) WITH SYSTEM VERSIONING")
                .is_err()
        );
    }

    #[test]
    fn partitions_and_table_options() {
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE p (id int, y int, PRIMARY KEY (id, y)) ENGINE=InnoDB PARTITION BY RANGE (y) \
             (PARTITION p0 VALUES LESS THAN (2000), PARTITION p1 VALUES LESS THAN MAXVALUE)",
        );
        apply(&mut h, "ALTER TABLE p DROP PARTITION p0, p1");
        apply(
            &mut h,
            "ALTER TABLE p ADD PARTITION (PARTITION p3 VALUES LESS THAN (3000))",
        );
        apply(
            &mut h,
            "ALTER TABLE p REORGANIZE PARTITION p1, p3 INTO (PARTITION p4 VALUES LESS THAN MAXVALUE)",
        );
        apply(&mut h, "ALTER TABLE p ADD z int PARTITION BY HASH(id)");
        apply(&mut h, "ALTER TABLE p REMOVE PARTITIONING");
        apply(&mut h, "ALTER TABLE p TRUNCATE PARTITION p1, p2");
        apply(&mut h, "ALTER TABLE p EXCHANGE PARTITION p1 WITH TABLE q");
        apply(
            &mut h,
            "ALTER TABLE p ENGINE = InnoDB, ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8, STATS_PERSISTENT=0",
        );
        apply(&mut h, "/*!40000 ALTER TABLE p DISABLE KEYS */");
        apply(&mut h, "CREATE TABLE ct (a int) START TRANSACTION");
        assert_eq!(names(&h, "d", "p"), ["id", "y", "z"]);
        assert_eq!(pk(&h, "d", "p"), ["id", "y"]);
    }

    #[test]
    fn non_schema_statements() {
        let mut h = SchemaHistory::new();
        apply(&mut h, "CREATE TABLE t (a int)");
        let before = h.clone();
        for sql in [
            "GRANT SELECT ON *.* TO 'u'@'%'",
            "ALTER USER 'root'@'localhost' IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$=4lsD9g7C.\tl O=5aQXdt1nMzjiQckPQSkYj0vUQn6.La1WL7G0g9Hze13K1'",
            "ALTER USER 'root'@'localhost' IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$=uH,JKszSO-eD\\\\TRwyJmQf.fw4QTrNQFH9GoF5kJZvqP1CAP93oOJGDd3'",
            "CREATE USER 'u'@'%' IDENTIFIED BY 'x'",
            "INSERT INTO t VALUES (1)",
            "BEGIN",
            "TRUNCATE TABLE t",
            "TRUNCATE t",
            "CREATE INDEX i ON t (a)",
            "DROP INDEX i ON t",
            "CREATE TEMPORARY TABLE tt (a int)",
            "DROP /*!40005 TEMPORARY */ TABLE IF EXISTS `t`",
            "CREATE DEFINER=`root`@`localhost` VIEW v AS SELECT 1",
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "DROP VIEW v",
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1",
            "DROP USER u",
            "RENAME USER a TO b",
            "SAVEPOINT x",
            "FLUSH PRIVILEGES",
            "ALTER EVENT e DISABLE",
            "",
            "this is not SQL at all '",
        ] {
            assert_eq!(h.apply_ddl("d", sql), Ok(vec![]), "{sql}");
        }
        assert_eq!(h, before);
    }

    #[test]
    fn errors_name_the_statement_and_forget_the_table() {
        let mut h = SchemaHistory::new();
        apply(&mut h, "CREATE TABLE t (a int)");
        let e = h
            .apply_ddl("d", "ALTER TABLE t DROP COLUMN nope")
            .unwrap_err();
        assert!(
            e.contains("ALTER TABLE t DROP COLUMN nope") && e.contains("nope: no such column"),
            "{e}"
        );
        assert!(e.contains("d.t is now unknown"), "{e}");
        assert!(h.get("d", "t").is_none());
        apply(&mut h, "CREATE TABLE t (a int)");
        let e = h.apply_ddl("d", "ALTER TABLE t FROBNICATE").unwrap_err();
        assert!(e.contains("FROBNICATE"), "{e}");
        let e = h
            .apply_ddl("d", "CREATE TABLE t2 AS SELECT * FROM x")
            .unwrap_err();
        assert!(e.contains("SELECT"), "{e}");
        let e = h
            .apply_ddl("d", "CREATE TABLE t3 (a vector(3))")
            .unwrap_err();
        assert!(e.contains("VECTOR"), "{e}");
        assert!(h.apply_ddl("d", "CREATE TABLE 'unterminated").is_err());
        // Statements about tables the history does not know are not errors.
        assert_eq!(
            h.apply_ddl("d", "ALTER TABLE unknown ADD b int"),
            Ok(vec![])
        );
        assert_eq!(h.apply_ddl("d", "DROP TABLE unknown"), Ok(vec![]));
    }

    #[test]
    fn rename_swap_and_stale_targets() {
        let mut h = SchemaHistory::new();
        apply(&mut h, "CREATE TABLE a (x int)");
        apply(&mut h, "CREATE TABLE b (y int, z int)");
        apply(&mut h, "RENAME TABLE a TO tmp, b TO a, tmp TO b");
        assert_eq!(names(&h, "d", "a"), ["y", "z"]);
        assert_eq!(names(&h, "d", "b"), ["x"]);
        // An unknown table renamed onto a known name: that name is unknown now.
        assert_eq!(apply(&mut h, "RENAME TABLE other TO a"), [key("d", "a")]);
        assert!(h.get("d", "a").is_none());
    }

    #[test]
    fn case_of_names() {
        let mut h = SchemaHistory::new();
        apply(&mut h, "CREATE TABLE `Mixed` (`Col` int)");
        assert!(h.get("d", "mixed").is_none());
        apply(
            &mut h,
            "ALTER TABLE `Mixed` MODIFY col bigint, RENAME COLUMN COL TO c2",
        );
        assert_eq!(
            types(&h, "d", "Mixed"),
            [("c2".to_string(), int(64, false), true)]
        );
        let mut lower = SchemaHistory::new();
        lower.set_lower_case_table_names(true);
        lower
            .apply_ddl("D", "CREATE TABLE `Mixed` (a int)")
            .unwrap();
        assert_eq!(
            lower.get("d", "mixed").map(|s| s.qualified_name()),
            Some("d.mixed".into())
        );
        assert!(lower.get("D", "MIXED").is_some());
    }

    #[test]
    fn column_types_from_information_schema() {
        use ColumnType as T;
        use StringKind as K;
        let cases: Vec<(&str, Option<&str>, ColumnType)> = vec![
            (
                "decimal(10,2) unsigned",
                None,
                T::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            (
                "enum('a','b''c')",
                Some("utf8mb4"),
                T::Enum {
                    members: vec!["a".into(), "b'c".into()],
                },
            ),
            (
                "enum('a\\\\b')",
                Some("utf8mb4"),
                T::Enum {
                    members: vec!["a\\b".into()],
                },
            ),
            (
                "set('x','y z')",
                Some("latin1"),
                T::Set {
                    members: vec!["x".into(), "y z".into()],
                },
            ),
            (
                "varchar(20)",
                Some("utf8mb4"),
                text(K::VarChar, 20, "utf8mb4"),
            ),
            ("varchar(20)", Some("utf8"), text(K::VarChar, 20, "utf8mb3")),
            ("char(3)", Some("binary"), bytes(K::Char, 3)),
            ("bit(5)", None, T::Bit { width: 5 }),
            ("datetime(6)", None, T::DateTime { fsp: 6 }),
            ("datetime /* mariadb-5.3 */", None, T::DateTime { fsp: 0 }),
            ("int(11) unsigned zerofill", None, int(32, true)),
            ("int unsigned", None, int(32, true)),
            ("tinyint(1)", None, int(8, false)),
            ("mediumint(9)", None, int(24, false)),
            ("bigint(20) unsigned", None, int(64, true)),
            ("double unsigned", None, T::Double),
            ("float(7,3)", None, T::Float),
            ("json", None, T::Json),
            (
                "point",
                None,
                T::Geometry {
                    kind: "point".into(),
                },
            ),
            (
                "geomcollection",
                None,
                T::Geometry {
                    kind: "geometrycollection".into(),
                },
            ),
            ("year(4)", None, T::Year),
            ("year", None, T::Year),
            ("time(3)", None, T::Time { fsp: 3 }),
            ("timestamp", None, T::Timestamp { fsp: 0 }),
            ("varbinary(255)", None, bytes(K::VarChar, 255)),
            ("binary(16)", None, bytes(K::Char, 16)),
            ("longblob", None, bytes(K::Long, u32::MAX)),
            (
                "mediumtext",
                Some("latin1"),
                text(K::Medium, 16_777_215, "latin1"),
            ),
            (
                "longtext",
                Some("utf8mb4"),
                text(K::Long, u32::MAX, "utf8mb4"),
            ),
            ("tinytext", Some("UTF8MB4"), text(K::Tiny, 255, "utf8mb4")),
            ("uuid", None, bytes(K::Char, 16)),
        ];
        for (s, cs, expected) in cases {
            assert_eq!(parse_column_type(s, cs), Ok(expected), "{s}");
        }
        for bad in [
            "varchar(20)",
            "int(11) unsigned foo",
            "decimal(70,2)",
            "bit(65)",
            "time(7)",
            "vector(3)",
            "varchar",
        ] {
            let charset = if bad == "varchar(20)" {
                None
            } else {
                Some("utf8mb4")
            };
            assert!(parse_column_type(bad, charset).is_err(), "{bad}");
        }
    }

    #[test]
    fn sql_name_round_trip() {
        // What binlake writes for a type parses back to the same type.
        let mut h = SchemaHistory::new();
        apply(
            &mut h,
            "CREATE TABLE r (a int unsigned, b decimal(65,30), c bit(3), d time(2), e datetime(6), f timestamp(1), \
             g enum('a','it''s'), h set('x'), i varchar(9), j tinytext, k longtext, l binary(4), m varbinary(7), \
             n mediumblob, o json, p point, q year, r double, s float, t bigint)",
        );
        for c in &h.get("d", "r").unwrap_or_else(|| panic!("r")).columns {
            let charset = match &c.ty {
                ColumnType::String { charset, .. } => Some(charset.as_str()),
                _ => None,
            };
            assert_eq!(
                parse_column_type(&c.ty.sql_name(), charset).as_ref(),
                Ok(&c.ty),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn json_round_trip() {
        let mut h = SchemaHistory::with_flavor(Flavor::MariaDb);
        h.set_server_charset("latin1");
        h.set_database_charset("x", "cp1251");
        apply(
            &mut h,
            "CREATE TABLE t (id bigint unsigned PRIMARY KEY, s varchar(5), e enum('a','b''c'), g point, j json, \
             b blob, n decimal(5,2), ts timestamp(3)) CHARSET utf8mb4",
        );
        h.insert(TableSchema {
            database: "x".into(),
            table: "plain".into(),
            columns: vec![Column::new("c", ColumnType::Bit { width: 3 }, true)],
            primary_key: vec![],
        });
        let json = h.to_json();
        let back = SchemaHistory::from_json(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, h);
        assert_eq!(back.to_json(), json);
        assert!(SchemaHistory::from_json("{}").is_err());
        assert!(
            SchemaHistory::from_json(&json.replace("\"version\":1", "\"version\":99")).is_err()
        );
    }

    #[test]
    fn lookup_trait() {
        use crate::binlog::SchemaLookup;
        let mut h = SchemaHistory::new();
        SchemaLookup::apply_ddl(&mut h, "d", "CREATE TABLE t (a int)");
        SchemaLookup::apply_ddl(&mut h, "d", "ALTER TABLE t FROBNICATE");
        assert!(h.lookup("d", "t").is_none());
        SchemaLookup::apply_ddl(&mut h, "d", "CREATE TABLE t (a int)");
        assert_eq!(h.lookup("d", "t").map(|s| s.columns.len()), Some(1));
    }

    /// Applies the DDL of the fixture binlogs and checks every table map of a table the
    /// history knows against it.
    #[test]
    fn fixture_binlogs() {
        use mysql_common::binlog::consts::BinlogVersion;
        use mysql_common::binlog::events::{Event, EventData};
        use mysql_common::binlog::{BinlogFileHeader, EventStreamReader};

        let dir = crate::fixture("");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| e.unwrap_or_else(|e| panic!("{e}")).path())
            .collect();
        paths.sort();

        #[derive(Default)]
        struct State {
            ddl: Vec<String>,
            /// (db, table, column count of the table map, columns in the history then).
            maps: Vec<(String, String, usize, Option<usize>)>,
            /// Table maps with full metadata compared column by column.
            full_metadata: usize,
        }
        fn visit(event: &Event, h: &mut SchemaHistory, st: &mut State, file: &str) {
            match event.read_data() {
                Ok(Some(EventData::QueryEvent(q))) => {
                    let sql = q.query();
                    let first = sql
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    if matches!(first.as_str(), "BEGIN" | "COMMIT" | "ROLLBACK") {
                        return;
                    }
                    if let Err(e) = h.apply_ddl(&q.schema(), &sql) {
                        panic!("{file}: {e}");
                    }
                    st.ddl.push(format!("{}: {sql}", q.schema()));
                }
                Ok(Some(EventData::TableMapEvent(tme))) => {
                    let (db, table) = (tme.database_name(), tme.table_name());
                    let known = h.get(&db, &table);
                    if let Some(schema) = known {
                        // The decoder's fallback path must accept the history's schema…
                        // The fixtures' one MariaDB file is `mariadb-bin.*`.
                        let flavor = if file.contains("mariadb") {
                            Flavor::MariaDb
                        } else {
                            Flavor::Mysql
                        };
                        let def =
                            crate::binlog::table::table_def(flavor, &tme, Some(schema), &|_| false)
                                .unwrap_or_else(|e| panic!("{file}: {e}"));
                        // …and when the table map has full metadata, agree with it.
                        if def.full_metadata {
                            let from_map: Vec<_> = def
                                .schema
                                .columns
                                .iter()
                                .map(|c| (&c.name, &c.ty))
                                .collect();
                            let from_history: Vec<_> =
                                schema.columns.iter().map(|c| (&c.name, &c.ty)).collect();
                            assert_eq!(from_map, from_history, "{file}: {db}.{table}");
                            st.full_metadata += 1;
                        }
                    }
                    let known = known.map(|s| s.columns.len());
                    st.maps.push((
                        db.into_owned(),
                        table.into_owned(),
                        tme.columns_count() as usize,
                        known,
                    ));
                }
                Ok(Some(EventData::TransactionPayloadEvent(p))) => {
                    let mut reader = p.decompressed().unwrap_or_else(|e| panic!("{file}: {e}"));
                    let mut inner = EventStreamReader::new(BinlogVersion::Version4);
                    while let Some(ev) = inner
                        .read_decompressed(&mut reader)
                        .unwrap_or_else(|e| panic!("{file}: payload: {e}"))
                    {
                        visit(&ev, h, st, file);
                    }
                }
                _ => {}
            }
        }

        let mut checked = 0;
        for path in paths {
            let file = path.display().to_string();
            let mut input = std::io::BufReader::new(
                std::fs::File::open(&path).unwrap_or_else(|e| panic!("{file}: {e}")),
            );
            if BinlogFileHeader::read(&mut input).is_err() {
                println!("{file}: not a binlog file, skipped");
                continue;
            }
            let mut reader = EventStreamReader::new(BinlogVersion::Version4);
            let mut h = SchemaHistory::new();
            let mut st = State::default();
            loop {
                match reader.read(&mut input) {
                    Ok(Some(event)) => visit(&event, &mut h, &mut st, &file),
                    Ok(None) => break,
                    // MariaDB-only event types mysql_common cannot read end the file early.
                    Err(e) => {
                        println!("{file}: stopped reading: {e}");
                        break;
                    }
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            for (db, table, n, known) in &st.maps {
                if !seen.insert((db.clone(), table.clone(), *n, *known)) {
                    continue;
                }
                match known {
                    Some(k) => {
                        assert_eq!(
                            k, n,
                            "{file}: {db}.{table}: the history has {k} columns, the table map {n}"
                        );
                        checked += 1;
                        println!("{file}: {db}.{table}: {n} columns, as in the history");
                    }
                    None => {
                        println!("{file}: {db}.{table}: no DDL for it in this file, not checked")
                    }
                }
            }
            println!("{file}: statements applied: {:?}", st.ddl);
            println!(
                "{file}: {} table maps with full metadata compared column by column",
                st.full_metadata
            );
        }
        assert!(checked > 0, "no table map could be checked against a DDL");
    }
}
