//! Every column type placed after every other one, decoded from the binlog and compared
//! with what `SELECT` returns, on the shared MariaDB (`binlog_row_metadata=FULL`) and on
//! one with `MINIMAL` metadata.
//!
//! A table map lists the charsets of its "character columns" in one list, and which
//! columns count differs between servers (MariaDB counts GEOMETRY, MySQL does not: see
//! `connectors/mysql/src/binlog/table.rs`). A reader that counts one column too many or
//! too few gives every later text column its neighbour's charset, so each table here puts
//! one type `A` before every type of the matrix, with non-ASCII text in every text column.

use std::path::{Path, PathBuf};
use std::process::Command;

use binlake_core::TableSchema;
use binlake_mysql::binlog::{BinlogReader, Filter, SchemaLookup, StartFrom};
use binlake_mysql::schema_history::load_from_information_schema;
use mysql_async::prelude::Queryable;

use crate::binlog::{assert_rows_equal, changes, select_rows};
use crate::services::{admin_conn, capture_source, unique};

/// (column type, a value of it). Text values are non-ASCII; charsets vary.
const TYPES: &[(&str, &str)] = &[
    ("GEOMETRY", "ST_GeomFromText('LINESTRING(0 0, 1 1)')"),
    ("POINT", "ST_GeomFromText('POINT(1 2)')"),
    ("JSON", r#"'{"k": "café 🦀"}'"#),
    ("ENUM('plain','café')", "'café'"),
    ("SET('x','ü') CHARACTER SET latin1", "'x,ü'"),
    ("BLOB", "X'C3A9FF00'"),
    ("TEXT", "'ünï 🦀'"),
    ("TEXT CHARACTER SET latin1", "'naïve'"),
    ("VARCHAR(20) CHARACTER SET latin1", "'café'"),
    ("VARCHAR(20) CHARACTER SET utf8mb4", "'emoji 😀 é'"),
    ("VARCHAR(10) CHARACTER SET cp1251", "'Жук'"),
    ("CHAR(6) CHARACTER SET utf8mb4", "'çà'"),
    ("BINARY(3)", "X'C3A900'"),
    ("VARBINARY(20)", "X'00FFC3'"),
    ("BIT(10)", "b'1010101010'"),
    ("DECIMAL(10,2)", "-12.34"),
    ("TIMESTAMP(3) NULL", "'2024-05-06 07:08:09.123'"),
    ("YEAR", "2024"),
    ("BIGINT UNSIGNED", "18446744073709551615"),
    ("INT", "-7"),
];

/// `CREATE TABLE` of table `t{a}`: the key, then for every type `T` of [`TYPES`] a column
/// of type `A` followed by one of type `T`.
fn create_table(a: usize) -> String {
    let mut cols = vec!["id INT NOT NULL PRIMARY KEY".to_string()];
    for (j, (ty, _)) in TYPES.iter().enumerate() {
        cols.push(format!("a{j} {}", TYPES[a].0));
        cols.push(format!("c{j} {ty}"));
    }
    format!(
        "CREATE TABLE t{a} ({}) DEFAULT CHARSET=utf8mb4",
        cols.join(", ")
    )
}

/// Two rows: every column set, and every nullable one NULL.
fn inserts(a: usize) -> [String; 2] {
    let mut values = vec!["1".to_string()];
    let mut nulls = vec!["2".to_string()];
    for (_, v) in TYPES {
        values.push(TYPES[a].1.to_string());
        values.push(v.to_string());
        nulls.push("NULL".into());
        nulls.push("NULL".into());
    }
    [
        format!("INSERT INTO t{a} VALUES ({})", values.join(", ")),
        format!("INSERT INTO t{a} VALUES ({})", nulls.join(", ")),
    ]
}

async fn create_tables(c: &mut mysql_async::Conn, db: &str) {
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("SET SESSION sql_mode = '', time_zone = '+00:00', NAMES utf8mb4")
        .await
        .unwrap();
    for a in 0..TYPES.len() {
        c.query_drop(create_table(a))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", create_table(a)));
    }
}

/// Inserts the rows, reads them from `r` and compares them with `SELECT`, and the schemas
/// the table maps gave with `information_schema`'s.
async fn insert_and_compare(c: &mut mysql_async::Conn, db: &str, r: &mut BinlogReader) {
    for a in 0..TYPES.len() {
        for sql in inserts(a) {
            c.query_drop(&sql).await.unwrap();
        }
    }
    let (events, _) = changes(r, 2 * TYPES.len()).await;
    assert_eq!(events.len(), 2 * TYPES.len());
    let known = load_from_information_schema(c, &|d, _| d == db)
        .await
        .unwrap();
    for pair in events.chunks(2) {
        let e = &pair[0];
        let selected = select_rows(c, e).await;
        for (e, s) in pair.iter().zip(&selected) {
            assert_rows_equal(e.after.as_ref().unwrap(), s, e);
        }
        let from_is: &TableSchema = known.get(db, &e.table.table).unwrap();
        for (col, want) in e.table.columns.iter().zip(&from_is.columns) {
            assert_eq!(
                col.ty, want.ty,
                "{}.{}: table map type != information_schema type",
                e.table.table, col.name
            );
        }
    }
}

fn filter(db: &str) -> Filter {
    Filter::new(&[format!("{db}.*")], &[], &[]).unwrap()
}

#[tokio::test]
async fn every_type_after_every_type_decodes_like_select_full_metadata() {
    let db = unique("it_colorder");
    let mut c = admin_conn().await;
    create_tables(&mut c, &db).await;
    // The history capture starts with: FULL table maps carry everything but which
    // LONGTEXT is MariaDB's JSON, which they take from it.
    let history = load_from_information_schema(&mut c, &|d, _| d == db)
        .await
        .unwrap();
    let mut r = match BinlogReader::open(
        &capture_source(),
        StartFrom::End,
        filter(&db),
        Box::new(history),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => crate::services::unavailable("MariaDB", e),
    };
    insert_and_compare(&mut c, &db, &mut r).await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test]
async fn every_type_after_every_type_decodes_like_select_minimal_metadata() {
    // Table maps without names still carry the charset list: the same counting applies,
    // with names and members from the schema history.
    let alt = crate::alt_mariadb::AltMariaDb::minimal().await;
    let mut c = alt.admin().await;
    let db = unique("it_colorder_min");
    create_tables(&mut c, &db).await;
    let history = load_from_information_schema(&mut c, &|d, _| d == db)
        .await
        .unwrap();
    let lookup: Box<dyn SchemaLookup> = Box::new(history);
    let mut r = BinlogReader::open(&alt.capture_source(), StartFrom::End, filter(&db), lookup)
        .await
        .unwrap();
    insert_and_compare(&mut c, &db, &mut r).await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// The binlog files of the shared server from `first` to the current position, copied
/// (the last one cut at that position, so no event is half written) into `dir`.
async fn copy_binlogs(c: &mut mysql_async::Conn, first: &str, dir: &Path) -> Vec<PathBuf> {
    let base: String = c
        .query_first("SELECT @@log_bin_basename")
        .await
        .unwrap()
        .unwrap();
    let server_dir = Path::new(&base).parent().unwrap().to_path_buf();
    let status: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let (last, pos): (String, u64) = (status.get(0).unwrap(), status.get(1).unwrap());
    let logs: Vec<(String, u64)> = c.query("SHOW BINARY LOGS").await.unwrap();
    let mut out = Vec::new();
    for (name, _) in logs.into_iter().filter(|(n, _)| n.as_str() >= first) {
        let mut bytes = std::fs::read(server_dir.join(&name)).unwrap();
        if name == last {
            bytes.truncate(pos as usize);
        }
        let to = dir.join(&name);
        std::fs::write(&to, bytes).unwrap();
        out.push(to);
        if name == last {
            break;
        }
    }
    out
}

#[tokio::test]
async fn binlog_dump_decodes_text_after_a_geometry_column() {
    let db = unique("it_colorder_dump");
    let mut c = admin_conn().await;
    let status: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let first: String = status.get(0).unwrap();
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("SET NAMES utf8mb4").await.unwrap();
    c.query_drop(
        "CREATE TABLE geo_text (id INT PRIMARY KEY, l1 VARCHAR(20) CHARACTER SET latin1,
         g POINT, name VARCHAR(50) CHARACTER SET utf8mb4, b VARBINARY(20))",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO geo_text VALUES (1, 'café', ST_GeomFromText('POINT(1 2)'), 'café 🦀', X'00')",
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(unique("binlake-it-dump"));
    std::fs::create_dir_all(&dir).unwrap();
    let files = copy_binlogs(&mut c, &first, &dir).await;
    let out = Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args(["binlog", "dump", "--include", &format!("{db}.*")])
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "binlake binlog dump failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("geo_text") && l.contains(r#""op":"c""#))
        .unwrap_or_else(|| panic!("no geo_text change in the dump:\n{stdout}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["after"]["l1"], "café", "{line}");
    assert_eq!(v["after"]["name"], "café 🦀", "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// A binlog without `binlog_row_metadata=FULL` whose tables were created before it (a
/// file copied from a server): `binlog dump` says how to give the schemas, and decodes
/// the rows with `--schema FILE.sql` (a `mysqldump --no-data`-like file) or with
/// `--source CONFIG` (the server's `information_schema`).
#[tokio::test]
async fn binlog_dump_takes_schemas_from_a_ddl_file_or_the_server() {
    let alt = tokio::task::spawn_blocking(|| {
        crate::alt_mariadb::AltMariaDb::start("dumpschema", 13319, "binlog_row_metadata = MINIMAL")
    })
    .await
    .unwrap();
    let mut c = alt.admin().await;
    let db = unique("it_dump_schema");
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    let ddl = "CREATE TABLE t (id INT NOT NULL, note VARCHAR(20) DEFAULT 'a;b', PRIMARY KEY (id))";
    c.query_drop(ddl).await.unwrap();
    // The next file holds only the rows.
    c.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let status: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let first: String = status.get(0).unwrap();
    c.query_drop("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    // A table created in the file: its DDL is there.
    c.query_drop("CREATE TABLE u (id INT PRIMARY KEY, note VARCHAR(5))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO u VALUES (3, 'three')")
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(unique("binlake-it-dump-schema"));
    std::fs::create_dir_all(&dir).unwrap();
    let files = copy_binlogs(&mut c, &first, &dir).await;
    let dump = |extra: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(["binlog", "dump", "--include", &format!("{db}.*")])
            .args(extra)
            .args(&files)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = dump(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--schema FILE.sql") && err.contains("--source CONFIG"),
        "{err}"
    );
    // The inserts (a CREATE TABLE is also an `op = t` for the table it replaces).
    let notes = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["op"] == "c")
            .map(|v| v["after"]["note"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    // --skip-errors: the events of `t` (its table map, then its rows) are skipped, each
    // said; those of `u` come out.
    let (code, out, err) = dump(&["--skip-errors".into()]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(notes(&out), ["three"]);
    assert_eq!(err.matches("skipped: ").count(), 2, "{err}");
    assert!(err.contains("2 event(s) could not be decoded"), "{err}");
    // A dump-like file: comments, executable comments, USE, a `;` inside a string.
    let sql = dir.join("schema.sql");
    std::fs::write(
        &sql,
        format!("-- schema\n/*!40101 SET NAMES utf8mb4 */;\nUSE `{db}`;\n{ddl};\n"),
    )
    .unwrap();
    let (code, out, err) = dump(&["--schema".into(), sql.display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(notes(&out), ["one", "two", "three"]);
    let cfg = dir.join("source.toml");
    std::fs::write(
        &cfg,
        "name = \"dumpschema\"\n[source]\nhost = \"127.0.0.1\"\nport = 13319\nuser = \"binlake\"\npassword = \"binlake\"\n",
    )
    .unwrap();
    let (code, out, err) = dump(&["--source".into(), cfg.display().to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(notes(&out), ["one", "two", "three"]);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
