//! The schema history against the real MariaDB: DDL applied by
//! [`SchemaHistory::apply_ddl`] gives, at every step, the schema the server's own
//! `binlog_row_metadata=FULL` table maps describe, and at the end exactly what
//! [`load_from_information_schema`] reads back.

use std::time::Duration;

use binlake_core::{Flavor, Op, TableSchema};
use binlake_mysql::binlog::{BinlogItem, BinlogReader, Filter, StartFrom};
use binlake_mysql::schema_history::{SchemaHistory, load_from_information_schema};
use mysql_async::prelude::Queryable;

use crate::services::{admin_conn, capture_source, unique};

/// Tables of every type, then changes to them. After each statement a row is inserted into
/// every table it changed (after deleting the previous one), so the binlog carries a table
/// map of the new schema.
const STATEMENTS: &[&str] = &[
    "CREATE TABLE ints (a tinyint, b tinyint(1), c smallint unsigned, d mediumint zerofill,
        e int(11) unsigned, f bigint unsigned, g bool, h serial, i int1, j int3, k middleint,
        l int8 unsigned, m integer signed)",
    "CREATE TABLE nums (a float, b float(7,3), c float(30), d double, e double precision, f real,
        g decimal, h decimal(10,2) unsigned, i numeric(5), j dec(65,30), k fixed(4,1), l bit,
        m bit(5), n bit(64))",
    "CREATE TABLE times (a date, b time, c time(3), d datetime(6), e timestamp(6) NULL, f year,
        g datetime, h timestamp NULL DEFAULT NULL)",
    r"CREATE TABLE texts (a char(10), b varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
        c tinytext, d text, e mediumtext, f longtext charset utf8, g char, h char(5) binary,
        i varchar(5) character set binary, j text character set binary,
        k varchar(7) COLLATE utf8mb4_unicode_ci, l national char(3), m nchar(4), n nvarchar(5),
        o national varchar(6), p long, q long varchar, r text(100), s text(100) charset utf8mb4,
        t char(2) ascii, u char(2) unicode, v varchar(3) CHARACTER SET cp1251 DEFAULT 'x',
        w char(4) CHARACTER SET 'koi8r', x varchar(300) CHARACTER SET utf16)",
    "CREATE TABLE bins (a binary(3), b varbinary(10), c tinyblob, d blob, e mediumblob,
        f longblob, g binary, h long varbinary, i blob(300)) DEFAULT CHARSET=utf8mb4",
    r"CREATE TABLE others (a enum('a','b''c','d\\e','') CHARACTER SET latin1, b set('x','y z'),
        c json, d geometry, e point, f linestring, g polygon, h multipoint, i multilinestring,
        j multipolygon, k geometrycollection, l uuid, m inet6, n inet4)",
    "CREATE TABLE gen (id int AUTO_INCREMENT, k varchar(10) NOT NULL, j json, num int DEFAULT 3,
        n varchar(100) AS (json_value(j, '$.name')) VIRTUAL, s int AS (num * 2) PERSISTENT,
        st int GENERATED ALWAYS AS (num + 1) STORED, inv int INVISIBLE,
        PRIMARY KEY (k, id), KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
        PARTITION BY KEY (id) PARTITIONS 2",
    "CREATE TABLE `MixedCase` (`Id` int NOT NULL, `Name` varchar(5), CONSTRAINT pk PRIMARY KEY (`Name`, `Id`))",
    "ALTER TABLE ints ADD COLUMN z int FIRST, ADD y varchar(3) AFTER c,
        ADD COLUMN (x text, w char(2) CHARACTER SET ascii)",
    "ALTER TABLE ints DROP COLUMN b, DROP d, MODIFY COLUMN c varchar(20) CHARACTER SET utf8mb4 NOT NULL AFTER e",
    "ALTER TABLE ints CHANGE COLUMN e ee bigint unsigned FIRST, RENAME COLUMN f TO ff",
    "ALTER TABLE texts CONVERT TO CHARACTER SET utf8mb4",
    "ALTER TABLE bins DEFAULT CHARSET=cp1251, ADD t varchar(4), ADD INDEX (a)",
    "ALTER TABLE nums ADD PRIMARY KEY (b, a)",
    "ALTER TABLE nums DROP PRIMARY KEY, ADD UNIQUE KEY (c), COMMENT 'no key, now'",
    "ALTER TABLE `MixedCase` MODIFY `name` varchar(8) CHARACTER SET latin1, ADD COLUMN IF NOT EXISTS `id` int",
    "CREATE TABLE coll (v varchar(3) DEFAULT 'x' COLLATE cp1251_bin,
        w varchar(3) DEFAULT _utf8mb4'y' COLLATE utf8mb4_bin, x char(1) COLLATE latin2_bin)",
    "ALTER TABLE texts MODIFY a char(12), CHANGE b b2 varchar(30) AFTER x",
    "ALTER TABLE nums ADD COLUMN n2 int NOT NULL DEFAULT 0, ADD UNIQUE KEY un2 (n2)",
    "CREATE UNIQUE INDEX ub ON nums (b)",
    "ALTER TABLE nums DROP INDEX un2",
    "ALTER TABLE nums RENAME INDEX ub TO ub2",
    "DROP INDEX ub2 ON nums",
    "RENAME TABLE times TO times2, others TO others2",
    "CREATE TABLE ints_copy LIKE ints",
    "ALTER TABLE ints_copy RENAME TO ints_copy2, ADD COLUMN IF NOT EXISTS z int, ENGINE=InnoDB, ALGORITHM=COPY",
    "DROP TABLE bins",
    "TRUNCATE TABLE nums",
    // MariaDB's JSON: a LONGTEXT with the column check `json_valid(c)` (which JSON gets
    // unless it has a CHECK of its own), marked as JSON whatever the schema comes from.
    "CREATE TABLE js (id int PRIMARY KEY, a json, b longtext CHECK (json_valid(b)),
        c json CHECK (json_length(c) > 0), d longtext, e text CHECK (json_valid(e)),
        f json NOT NULL DEFAULT '{}', CONSTRAINT tc CHECK (json_valid(d)))",
    "ALTER TABLE js MODIFY a longtext, CHANGE d d2 json, ADD g json AFTER id",
    "ALTER TABLE js RENAME COLUMN b TO b2",
    "ALTER TABLE js CONVERT TO CHARACTER SET utf8mb4",
    // Defaults (what fills an INSERT's columns a MINIMAL row image leaves out): literals,
    // NULL, none, expressions and types whose literals binlake does not convert.
    "CREATE TABLE defs (id int PRIMARY KEY, a int NOT NULL DEFAULT 7, b int DEFAULT -3,
        c varchar(10) DEFAULT 'it''s', d varchar(10), e text, f int NOT NULL,
        g enum('x','y') DEFAULT 'y', h set('p','q') DEFAULT 'p,q',
        i datetime DEFAULT CURRENT_TIMESTAMP, j decimal(5,2) DEFAULT 1.5, k char(3) DEFAULT 'ab',
        l varchar(5) DEFAULT NULL, m bigint unsigned DEFAULT 18446744073709551615,
        n varchar(10) DEFAULT (concat('a', 'b')), o timestamp NULL DEFAULT NULL,
        p int AUTO_INCREMENT UNIQUE, q int AS (a + 1) VIRTUAL)",
    "ALTER TABLE defs ALTER COLUMN a SET DEFAULT 8, ALTER b DROP DEFAULT,
        ALTER COLUMN c SET DEFAULT 'z', ALTER COLUMN d SET DEFAULT upper('u')",
];

fn columns(s: &TableSchema) -> Vec<String> {
    s.columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{} default {:?}",
                c.name,
                c.ty.sql_name(),
                if c.nullable { "" } else { " not null" },
                c.default
            )
        })
        .collect()
}

#[tokio::test]
async fn ddl_history_matches_table_maps_and_information_schema() {
    let db = unique("it_schema_history");
    let filter = Filter::new(&[format!("{db}.*")], &[], &[]).unwrap();
    let mut c = admin_conn().await;
    let server_charset: String = c
        .query_first("SELECT @@character_set_server")
        .await
        .unwrap()
        .unwrap();
    // The reader keeps its own history from the binlog's DDL, as capture does: FULL
    // table maps describe everything but which LONGTEXT is JSON.
    let mut lookup = SchemaHistory::with_flavor(Flavor::MariaDb);
    lookup.set_server_charset(&server_charset);
    let mut reader =
        match BinlogReader::open(&capture_source(), StartFrom::End, filter, Box::new(lookup)).await
        {
            Ok(r) => r,
            Err(e) => crate::services::unavailable("MariaDB", e),
        };
    let create_db = format!("CREATE DATABASE {db} CHARACTER SET latin1");
    c.query_drop(&create_db).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("SET SESSION sql_mode = ''").await.unwrap();

    let mut history = SchemaHistory::with_flavor(Flavor::MariaDb);
    history.set_server_charset(&server_charset);
    history.apply_ddl("", &create_db).unwrap();

    // The schema expected for each row inserted, in order.
    let mut expected: Vec<TableSchema> = Vec::new();
    for sql in STATEMENTS {
        c.query_drop(*sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let changed = history
            .apply_ddl(&db, sql)
            .unwrap_or_else(|e| panic!("{e}"));
        for (d, t) in changed {
            let Some(schema) = history.get(&d, &t) else {
                continue; // dropped or renamed away
            };
            // One row at a time, so that keys never collide.
            c.query_drop(format!(
                "DELETE FROM `{d}`.`{t}`; INSERT INTO `{d}`.`{t}` () VALUES ()"
            ))
            .await
            .unwrap_or_else(|e| panic!("insert into {d}.{t} after `{sql}`: {e}"));
            expected.push(schema.clone());
        }
    }

    assert!(
        expected.len() >= 20,
        "only {} schema changes",
        expected.len()
    );

    // The binlog's table maps (FULL metadata) at each step.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < expected.len() {
        let item = tokio::time::timeout_at(deadline, reader.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {seen} of {} rows", expected.len()))
            .expect("binlog item");
        if let BinlogItem::Change(e) = item
            && e.op == Op::Create
        {
            let got = (*e.table).clone();
            let want = &expected[seen];
            assert_eq!(
                (got.table.as_str(), columns(&got), &got.primary_key),
                (want.table.as_str(), columns(want), &want.primary_key),
                "row {seen}: the table map (left) and the history (right) differ"
            );
            assert_eq!(got, *want, "row {seen}");
            seen += 1;
        }
    }

    // information_schema now: the same schemas, no more, no fewer.
    let loaded = load_from_information_schema(&mut c, &|d, _| d == db)
        .await
        .unwrap();
    let from_ddl: Vec<_> = history.schemas().filter(|s| s.database == db).collect();
    let from_is: Vec<_> = loaded.schemas().collect();
    assert_eq!(
        from_is.iter().map(|s| &s.table).collect::<Vec<_>>(),
        from_ddl.iter().map(|s| &s.table).collect::<Vec<_>>()
    );
    for (a, b) in from_is.iter().zip(&from_ddl) {
        assert_eq!(
            (columns(a), &a.primary_key),
            (columns(b), &b.primary_key),
            "{}: information_schema (left) and the history (right) differ",
            a.table
        );
        assert_eq!(a, b);
    }
    // The loaded history knows the defaults: a later ADD takes the table's charset.
    let mut loaded = loaded;
    loaded
        .apply_ddl(&db, "ALTER TABLE `MixedCase` ADD extra char(1)")
        .unwrap();
    assert_eq!(
        loaded
            .get(&db, "MixedCase")
            .unwrap()
            .columns
            .last()
            .unwrap()
            .ty
            .sql_name(),
        "char(1)"
    );
    assert!(matches!(
        &loaded.get(&db, "MixedCase").unwrap().columns.last().unwrap().ty,
        binlake_core::ColumnType::String { charset, .. } if charset == "latin1"
    ));
    let json: Vec<_> = loaded
        .get(&db, "js")
        .unwrap()
        .columns
        .iter()
        .filter(|c| c.ty.is_json())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(json, ["g", "b2", "d2", "f"]);

    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
