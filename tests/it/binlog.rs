//! The binlog reader against the real MariaDB: every type decodes to exactly what `SELECT`
//! returns, transactions and DDL come out right, and resuming (from a GTID position, from
//! file:pos, and after a killed connection mid-transaction) loses and repeats nothing.

use std::time::Duration;

use binlake_core::{ChangeEvent, Op, ResumePosition, Row, Value};
use binlake_mysql::binlog::{BinlogItem, BinlogReader, Filter, NoLookup, StartFrom};
use binlake_mysql::values::from_mysql;
use mysql_async::prelude::Queryable;

use crate::services::{admin_conn, capture_source, unique};

pub const TYPE_MATRIX: &str = "CREATE TABLE type_matrix (
  id INT NOT NULL PRIMARY KEY,
  c_tinyint TINYINT, c_tinyint_u TINYINT UNSIGNED, c_smallint SMALLINT, c_smallint_u SMALLINT UNSIGNED,
  c_mediumint MEDIUMINT, c_mediumint_u MEDIUMINT UNSIGNED, c_int INT, c_int_u INT UNSIGNED,
  c_bigint BIGINT, c_bigint_u BIGINT UNSIGNED, c_bool BOOLEAN,
  c_float FLOAT, c_double DOUBLE,
  c_decimal DECIMAL(65,30), c_decimal_5_2 DECIMAL(5,2), c_decimal_20_0 DECIMAL(20,0),
  c_bit1 BIT(1), c_bit10 BIT(10), c_bit64 BIT(64),
  c_date DATE, c_time TIME, c_time3 TIME(3), c_time6 TIME(6),
  c_datetime DATETIME, c_datetime3 DATETIME(3), c_datetime6 DATETIME(6),
  c_timestamp TIMESTAMP NULL DEFAULT NULL, c_timestamp6 TIMESTAMP(6) NULL DEFAULT NULL, c_year YEAR,
  c_char CHAR(10), c_varchar VARCHAR(255), c_latin1 VARCHAR(20) CHARACTER SET latin1,
  c_varchar_long VARCHAR(1000), c_tinytext TINYTEXT, c_text TEXT, c_mediumtext MEDIUMTEXT, c_longtext LONGTEXT,
  c_binary BINARY(4), c_varbinary VARBINARY(16), c_tinyblob TINYBLOB, c_blob BLOB, c_mediumblob MEDIUMBLOB, c_longblob LONGBLOB,
  c_enum ENUM('small','medium','large'), c_set SET('a','b','c'),
  c_json JSON, c_geometry GEOMETRY, c_point POINT
) DEFAULT CHARSET=utf8mb4";

/// Rows of edge values, as SQL value lists in column order.
pub const ROWS: &[&str] = &[
    // maxima and wide values
    "(1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
      9223372036854775807, 18446744073709551615, TRUE,
      3.40282e38, 1.7976931348623157e308,
      99999999999999999999999999999999999.999999999999999999999999999999, 999.99, 99999999999999999999,
      b'1', b'1111111111', b'1111111111111111111111111111111111111111111111111111111111111111',
      '9999-12-31', '838:59:59', '838:59:59.999', '838:59:59.000000',
      '9999-12-31 23:59:59', '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999999',
      '2038-01-19 03:14:07', '2038-01-19 03:14:07.999999', 2155,
      'fixed', 'unicode: 日本語 🦀 \"q\" \\\\ tab\t', 'café',
      REPEAT('x', 1000), 'tiny', 'text', 'medium', REPEAT('long', 5000),
      X'0001FEFF', X'DEADBEEF', X'00', X'00FF00', X'ABCD', REPEAT(X'AB', 70000),
      'large', 'a,c', '{\"a\": [1, 2.5, {\"b\": null}], \"ü\": \"😀\"}',
      ST_GeomFromText('LINESTRING(0 0, 1 1, 2 5)', 4326), ST_GeomFromText('POINT(1 2)'))",
    // minima, negatives, fractions
    "(2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
      -9223372036854775808, 0, FALSE,
      -1.5, -2.2250738585072014e-308,
      -99999999999999999999999999999999999.999999999999999999999999999999, -999.99, -1,
      b'0', b'0000000001', b'0',
      '1000-01-01', '-838:59:59', '-00:00:01.500', '-12:34:56.000001',
      '1000-01-01 00:00:00', '1970-01-01 00:00:00.001', '1969-12-31 23:59:59.999999',
      '1970-01-01 00:00:01', '1970-01-01 00:00:01.000001', 1901,
      '', '', '', '', '', '', '', '',
      X'00000000', X'', X'', X'', X'', X'',
      'small', '', '[]',
      ST_GeomFromText('POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))'), ST_GeomFromText('POINT(-1.5 2.25)', 3857))",
    // every nullable column NULL
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    // zero dates and other values MySQL allows without strict mode
    "(4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'0', b'0', b'0',
      '0000-00-00', '00:00:00', '00:00:00', '00:00:00',
      '0000-00-00 00:00:00', '0000-00-00 00:00:00', '2024-02-29 12:00:00.5',
      '0000-00-00 00:00:00', '0000-00-00 00:00:00', 0,
      'a ', 'trailing  ', 'x', 'y', 'z', 'w', 'v', 'u',
      X'01', X'00', X'00', X'00', X'00', X'00',
      '', 'a,b,c', '\"just a string\"',
      ST_GeomFromText('MULTIPOINT(0 0, 1 1)'), ST_GeomFromText('POINT(0 0)'))",
];

async fn reader(db: &str) -> BinlogReader {
    let filter = Filter::new(&[format!("{db}.*")], &[], &[]).unwrap();
    match BinlogReader::open(
        &capture_source(),
        StartFrom::End,
        filter,
        Box::new(NoLookup),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => crate::services::unavailable("MariaDB", e),
    }
}

async fn reader_at(db: &str, pos: ResumePosition) -> BinlogReader {
    let filter = Filter::new(&[format!("{db}.*")], &[], &[]).unwrap();
    BinlogReader::open(
        &capture_source(),
        StartFrom::Position(pos),
        filter,
        Box::new(NoLookup),
    )
    .await
    .expect("open at position")
}

/// Reads items until `n` row changes have arrived (and their transactions committed).
pub(crate) async fn changes(r: &mut BinlogReader, n: usize) -> (Vec<ChangeEvent>, Vec<BinlogItem>) {
    let mut out = Vec::new();
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n || !matches!(all.last(), Some(BinlogItem::Commit(_))) {
        let item = tokio::time::timeout_at(deadline, r.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} changes: {all:#?}", out.len()))
            .expect("binlog item");
        if let BinlogItem::Change(e) = &item {
            out.push(e.clone());
        }
        all.push(item);
    }
    (out, all)
}

async fn admin_db(db: &str) -> mysql_async::Conn {
    let mut c = admin_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("SET SESSION sql_mode = '', time_zone = '+00:00'")
        .await
        .unwrap();
    c
}

/// The table's rows as `SELECT` returns them (binary protocol, UTC), converted with the
/// column types the binlog reported.
pub(crate) async fn select_rows(c: &mut mysql_async::Conn, e: &ChangeEvent) -> Vec<Row> {
    let rows: Vec<mysql_async::Row> = c
        .exec(format!("SELECT * FROM {} ORDER BY id", e.table.table), ())
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .zip(&e.table.columns)
                .map(|(v, col)| {
                    from_mysql(v, &col.ty).unwrap_or_else(|err| panic!("{}: {err}", col.name))
                })
                .collect()
        })
        .collect()
}

pub(crate) fn assert_rows_equal(binlog: &Row, select: &Row, e: &ChangeEvent) {
    for (i, col) in e.table.columns.iter().enumerate() {
        let (b, s) = (&binlog[i], &select[i]);
        let same = match (b, s) {
            // MySQL JSON comes back from SELECT in MySQL's own text layout; compare as JSON.
            (Value::Json(x), Value::Json(y)) => {
                serde_json::from_str::<serde_json::Value>(x).ok()
                    == serde_json::from_str::<serde_json::Value>(y).ok()
            }
            _ => b == s,
        };
        assert!(
            same,
            "row {:?} column {} ({}): binlog {b:?} != SELECT {s:?}",
            binlog[0],
            col.name,
            col.ty.sql_name()
        );
    }
}

#[tokio::test]
async fn every_type_decodes_to_what_select_returns() {
    let db = unique("it_types");
    let mut r = reader(&db).await;
    let mut c = admin_db(&db).await;
    c.query_drop(TYPE_MATRIX).await.unwrap();
    for row in ROWS {
        c.query_drop(format!("INSERT INTO type_matrix VALUES {row}"))
            .await
            .unwrap();
    }
    let (events, _) = changes(&mut r, ROWS.len()).await;
    assert_eq!(events.len(), ROWS.len());
    let selected = select_rows(&mut c, &events[0]).await;
    for (e, s) in events.iter().zip(&selected) {
        assert_eq!(e.op, Op::Create);
        assert!(e.before.is_none());
        assert_rows_equal(e.after.as_ref().unwrap(), s, e);
    }
    // Schema from the table map: names, key, types.
    let t = &events[0].table;
    assert_eq!(t.columns.len(), 49);
    assert_eq!(t.primary_key, vec![0]);
    assert_eq!(t.columns[10].ty.sql_name(), "bigint unsigned");
    assert_eq!(t.columns[14].ty.sql_name(), "decimal(65,30)");
    assert_eq!(t.columns[32].ty.sql_name(), "varchar(20)");
    assert!(
        matches!(&t.columns[32].ty, binlake_core::ColumnType::String { charset, .. } if charset == "latin1")
    );
    assert_eq!(
        t.columns[44].ty.sql_name(),
        "enum('small','medium','large')"
    );

    // Updates carry both images; deletes the before-image.
    c.query_drop(
        "UPDATE type_matrix SET c_varchar = 'changed', c_json = '{\"k\": 1}' WHERE id = 1",
    )
    .await
    .unwrap();
    c.query_drop("DELETE FROM type_matrix WHERE id = 2")
        .await
        .unwrap();
    let (events, _) = changes(&mut r, 2).await;
    assert_eq!(events[0].op, Op::Update);
    assert_rows_equal(events[0].before.as_ref().unwrap(), &selected[0], &events[0]);
    let now = select_rows(&mut c, &events[0]).await;
    assert_rows_equal(events[0].after.as_ref().unwrap(), &now[0], &events[0]);
    assert_eq!(events[1].op, Op::Delete);
    assert_rows_equal(events[1].before.as_ref().unwrap(), &selected[1], &events[1]);
    assert!(events[1].after.is_none());
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test]
async fn transactions_rollbacks_truncate_and_ddl_mid_stream() {
    let db = unique("it_txn");
    let mut r = reader(&db).await;
    let mut c = admin_db(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE u (a INT, b INT, s VARCHAR(5), PRIMARY KEY (b, a))")
        .await
        .unwrap();
    // One transaction over two tables, several statements, a multi-row insert.
    c.query_drop("BEGIN; INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c'); INSERT INTO u VALUES (1,2,'x'); UPDATE t SET v='bb' WHERE id=2; COMMIT")
        .await
        .unwrap();
    // Rolled back: nothing may come out.
    c.query_drop("BEGIN; INSERT INTO t VALUES (99,'gone'); ROLLBACK")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (4,'d')").await.unwrap();
    let (events, items) = changes(&mut r, 6).await;
    let ops: Vec<(Op, String)> = events
        .iter()
        .map(|e| (e.op, e.table.table.clone()))
        .collect();
    assert_eq!(
        ops,
        [
            (Op::Create, "t"),
            (Op::Create, "t"),
            (Op::Create, "t"),
            (Op::Create, "u"),
            (Op::Update, "t"),
            (Op::Create, "t")
        ]
        .map(|(o, t)| (o, t.to_string()))
    );
    assert!(
        events
            .iter()
            .all(|e| e.after.as_ref().unwrap()[0] != Value::Int(99)),
        "rolled-back row emitted"
    );
    // Transaction metadata: one GTID for the first five, orders 1..=5, per-table order.
    let t0 = events[0].transaction.clone().unwrap();
    assert!(
        events[..5]
            .iter()
            .all(|e| e.transaction.as_ref().unwrap().id == t0.id)
    );
    assert_eq!(
        events[..5]
            .iter()
            .map(|e| e.transaction.as_ref().unwrap().total_order)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        events[3]
            .transaction
            .as_ref()
            .unwrap()
            .data_collection_order,
        1
    );
    assert_eq!(
        events[4]
            .transaction
            .as_ref()
            .unwrap()
            .data_collection_order,
        4
    );
    assert_ne!(events[5].transaction.as_ref().unwrap().id, t0.id);
    assert_eq!(
        events[0]
            .source
            .gtid
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some(&*t0.id)
    );
    // Rows of one event are numbered; positions only grow.
    assert_eq!(
        events[..3]
            .iter()
            .map(|e| e.source.position.row)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(
        events
            .windows(2)
            .all(|w| w[0].source.position < w[1].source.position)
    );
    // Composite key in key order: (b, a).
    assert_eq!(events[3].table.primary_key, vec![1, 0]);
    // MariaDB sends ANNOTATE_ROWS (the statement) only to replicas that set a dump flag
    // mysql_async cannot set, so `source.query` stays empty on a live MariaDB stream.
    assert_eq!(events[0].source.query, None);
    // Commits only at transaction ends: begin/commit pairs around the two transactions.
    let commits = items
        .iter()
        .filter(|i| matches!(i, BinlogItem::Commit(_)))
        .count();
    assert!(commits >= 2);

    // DDL mid-stream: rows before and after decode with their own schema.
    c.query_drop("ALTER TABLE t ADD COLUMN w DECIMAL(6,2) NOT NULL DEFAULT 1.50 AFTER id")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (5, 2.25, 'e')")
        .await
        .unwrap();
    c.query_drop("ALTER TABLE t DROP COLUMN v, MODIFY w DECIMAL(8,3)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (6, 3.125)")
        .await
        .unwrap();
    c.query_drop("TRUNCATE TABLE t").await.unwrap();
    let mut schema_changes = Vec::new();
    let mut evs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while evs.len() < 3 {
        match tokio::time::timeout_at(deadline, r.next())
            .await
            .expect("timeout")
            .unwrap()
        {
            BinlogItem::Change(e) => evs.push(e),
            BinlogItem::SchemaChange(s) => schema_changes.push(s),
            _ => {}
        }
    }
    assert_eq!(schema_changes.len(), 2, "{schema_changes:#?}");
    assert!(schema_changes[0].ddl.contains("ADD COLUMN w"));
    let names = |e: &ChangeEvent| {
        e.table
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&evs[0]), ["id", "w", "v"]);
    assert_eq!(
        evs[0].after.as_ref().unwrap()[1],
        Value::Decimal("2.25".into())
    );
    assert_eq!(names(&evs[1]), ["id", "w"]);
    assert_eq!(
        evs[1].after.as_ref().unwrap()[1],
        Value::Decimal("3.125".into())
    );
    assert_eq!(evs[2].op, Op::Truncate);
    assert_eq!(evs[2].table.table, "t");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test]
async fn resume_from_gtid_and_file_positions_and_after_a_killed_connection() {
    let db = unique("it_resume");
    let mut r = reader(&db).await;
    let mut c = admin_db(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    for i in 1..=3 {
        c.query_drop(format!("INSERT INTO t VALUES ({i})"))
            .await
            .unwrap();
    }
    let (_, items) = changes(&mut r, 3).await;
    let after_3 = r.resume_position().clone();
    let file_after_3 = items
        .iter()
        .rev()
        .find_map(|i| match i {
            BinlogItem::Commit(c) => Some(c.file_pos.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(after_3, ResumePosition::MariaDbGtids(_)),
        "{after_3}"
    );
    drop(r);
    for i in 4..=6 {
        c.query_drop(format!("INSERT INTO t VALUES ({i})"))
            .await
            .unwrap();
    }
    let ids = |evs: &[ChangeEvent]| {
        evs.iter()
            .map(|e| e.after.as_ref().unwrap()[0].clone())
            .collect::<Vec<_>>()
    };
    let expect_4_6 = [Value::Int(4), Value::Int(5), Value::Int(6)];
    // From the GTID position: exactly the transactions after it.
    let mut g = reader_at(&db, after_3.clone()).await;
    let (evs, _) = changes(&mut g, 3).await;
    assert_eq!(ids(&evs), expect_4_6);
    // From file:pos: the same.
    let mut f = reader_at(&db, ResumePosition::File(file_after_3)).await;
    let (evs, _) = changes(&mut f, 3).await;
    assert_eq!(ids(&evs), expect_4_6);
    drop((g, f));

    // A big transaction (~10 MB of row events, more than socket buffers hold); the
    // connection is killed after part of it was handed out.
    let mut k = reader_at(&db, after_3).await;
    let (evs, _) = changes(&mut k, 3).await;
    assert_eq!(ids(&evs), expect_4_6);
    c.query_drop("CREATE TABLE big (id INT PRIMARY KEY, pad CHAR(200))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO big SELECT seq, REPEAT('x', 200) FROM seq_1_to_50000")
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        if let BinlogItem::Change(e) = k.next().await.unwrap() {
            got.push(e);
        }
    }
    let dump_threads: Vec<u64> = c
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%' AND USER = 'binlake'")
        .await
        .unwrap();
    assert!(!dump_threads.is_empty());
    for id in dump_threads {
        let _ = c.query_drop(format!("KILL {id}")).await;
    }
    let (rest, _) = changes(&mut k, 50_000 - got.len()).await;
    got.extend(rest);
    assert!(
        k.reconnects() >= 1,
        "the reader did not notice the killed connection"
    );
    let expected: Vec<Value> = (1..=50_000).map(Value::Int).collect();
    assert_eq!(
        ids(&got),
        expected,
        "a change was lost or repeated across the reconnect"
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// A session that switches itself to `binlog_format=STATEMENT` writes its INSERT as a
/// QUERY event: for a captured table that stops the stream with a definite error naming
/// the table, for a table that is not captured it passes.
#[tokio::test(flavor = "multi_thread")]
async fn statement_format_dml_of_a_captured_table_stops_the_stream() {
    let db = unique("it_stmt");
    let other = unique("it_stmt_other");
    let mut r = reader(&db).await;
    let mut c = admin_db(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    c.query_drop(format!(
        "CREATE DATABASE {other}; CREATE TABLE {other}.o (id INT PRIMARY KEY)"
    ))
    .await
    .unwrap();
    c.query_drop("INSERT INTO t VALUES (1, 'row')")
        .await
        .unwrap();
    c.query_drop("SET SESSION binlog_format = 'STATEMENT'")
        .await
        .unwrap();
    // Not captured: no error.
    c.query_drop(format!("INSERT INTO {other}.o VALUES (1)"))
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (2, 'statement')")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let err = loop {
        match tokio::time::timeout_at(deadline, r.next()).await {
            Err(_) => panic!("no error within 30 s; items: {seen:#?}"),
            Ok(Ok(item)) => seen.push(item),
            Ok(Err(e)) => break e,
        }
    };
    // The row-format insert came through first.
    assert!(
        seen.iter()
            .any(|i| matches!(i, BinlogItem::Change(e) if e.op == Op::Create)),
        "{seen:#?}"
    );
    let msg = err.to_string();
    assert!(!err.is_transient(), "{msg}");
    assert!(msg.contains(&format!("(table {db}.t)")), "{msg}");
    assert!(msg.contains("binlog_format=STATEMENT"), "{msg}");
    assert!(msg.contains("SET GLOBAL binlog_format='ROW'"), "{msg}");
    assert!(msg.contains(&format!("new snapshot of {db}.t")), "{msg}");
    c.query_drop(format!("DROP DATABASE {db}; DROP DATABASE {other}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn zero_timestamps_are_the_zero_value_on_both_paths_and_follow_debeziums_rule() {
    // '0000-00-00 00:00:00' (sql_mode without NO_ZERO_DATE) is written to the binlog as 0
    // seconds; '1970-01-01 00:00:00' UTC is outside TIMESTAMP's range, so 0 is the zero
    // timestamp, never the epoch. Nullable: null (Debezium) and NULL (lake); NOT NULL:
    // Debezium's epoch.
    use std::sync::Arc;

    use binlake_core::debezium::{DebeziumOptions, TableCodec};
    use binlake_core::temporal::ZERO_TIMESTAMP;
    use binlake_core::{Flavor, Value};
    use binlake_lake::arrow_map::ColumnBuilder;

    let db = unique("it_zero_ts");
    let mut r = reader(&db).await;
    let mut c = admin_db(&db).await;
    c.query_drop(
        "CREATE TABLE zt (id INT PRIMARY KEY, ts TIMESTAMP NULL DEFAULT NULL,
         ts_nn TIMESTAMP(3) NOT NULL DEFAULT '0000-00-00 00:00:00', first_second TIMESTAMP NULL)",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO zt VALUES (1, '0000-00-00 00:00:00', '0000-00-00 00:00:00', '1970-01-01 00:00:01')",
    )
    .await
    .unwrap();
    let (events, _) = changes(&mut r, 1).await;
    let e = &events[0];
    let binlog = e.after.clone().unwrap();
    let snapshot = select_rows(&mut c, e).await.remove(0);
    assert_rows_equal(&binlog, &snapshot, e);
    assert_eq!(
        binlog[1..],
        [
            Value::Timestamp(ZERO_TIMESTAMP),
            Value::Timestamp(ZERO_TIMESTAMP),
            Value::Timestamp(1_000_000)
        ]
    );
    let codec = TableCodec::new(
        e.table.clone(),
        Arc::new(DebeziumOptions::new("it", Flavor::MariaDb)),
    );
    for (path, row) in [("binlog", binlog), ("snapshot", snapshot)] {
        let mut event = e.clone();
        event.after = Some(row.clone());
        let mut buf = Vec::new();
        codec.encode_value(&event, 0, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let after = &v["after"];
        assert_eq!(after["ts"], serde_json::Value::Null, "{path}: {v}");
        assert_eq!(after["ts_nn"], "1970-01-01T00:00:00.000Z", "{path}: {v}");
        assert_eq!(after["first_second"], "1970-01-01T00:00:01Z", "{path}: {v}");
        let nulls: Vec<bool> = e
            .table
            .columns
            .iter()
            .zip(&row)
            .map(|(col, value)| {
                let mut b = ColumnBuilder::new(&col.ty, 1);
                b.append(value).unwrap();
                b.finish().is_null(0)
            })
            .collect();
        assert_eq!(nulls, [false, true, true, false], "{path}: lake NULLs");
    }
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
