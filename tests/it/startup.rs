//! Start-up checks, each provoked for real against MariaDB: the exact message a user sees
//! when capture cannot start (binlog off, wrong binlog format or row image, missing grants,
//! purged resume position, server_id in use, unreachable server, wrong password).
//!
//! Server settings are provoked on separate instances (`alt_mariadb`, ports 13310–13313),
//! never on the shared one, whose globals other tests rely on. TLS is not covered: the
//! `[source]` section has no TLS settings yet and the test MariaDB has no certificates.

use std::time::Duration;

use binlake_core::{BinlogFilePos, ResumePosition};
use binlake_mysql::binlog::{BinlogItem, BinlogReader, Filter, NoLookup, StartFrom};
use binlake_mysql::{Error, SourceConfig, connect};
use mysql_async::prelude::Queryable;

use crate::alt_mariadb::AltMariaDb;
use crate::services::{admin_conn, capture_source, unique};

async fn open(cfg: &SourceConfig, start: StartFrom, filter: Filter) -> Result<BinlogReader, Error> {
    BinlogReader::open(cfg, start, filter, Box::new(NoLookup)).await
}

fn only(db: &str) -> Filter {
    Filter::new(&[format!("{db}.*")], &[], &[]).unwrap()
}

/// The error of opening a reader at the end of the binlog; panics when it opens.
async fn refused(cfg: &SourceConfig, filter: Filter) -> Error {
    match open(cfg, StartFrom::End, filter).await {
        Ok(r) => panic!("capture started on {}: {r:?}", cfg.describe()),
        Err(e) => e,
    }
}

/// The problems of a `Requirement` error, checking its heading.
fn requirement(e: &Error, target: &str) -> Vec<String> {
    assert!(!e.is_transient(), "must be definite: {e}");
    let Error::Requirement { problems, .. } = e else {
        panic!("expected a requirement error, got {e:?}");
    };
    assert!(
        e.to_string().starts_with(&format!(
            "{target} cannot be captured until this is fixed:\n  - "
        )),
        "{e}"
    );
    problems.clone()
}

const LOG_BIN_OFF: &str = "the binary log is off (log_bin = OFF): binlake reads changes from it. Enable it in the server config ([mysqld] or [mariadbd] section: log_bin = <basename> and a server_id) and restart the server";

fn format_problem(current: &str) -> String {
    format!(
        "binlog_format is {current}, binlake needs ROW: run SET GLOBAL binlog_format = 'ROW' and put binlog_format = ROW in the server config (sessions already open keep the old format until they reconnect)"
    )
}

#[tokio::test]
async fn binlog_off_is_refused() {
    let db = AltMariaDb::start("nobinlog", 13310, "skip-log-bin");
    let cfg = db.capture_source();
    let e = refused(&cfg, Filter::default()).await;
    assert_eq!(
        requirement(&e, &cfg.describe()),
        vec![LOG_BIN_OFF.to_string()]
    );
    assert_eq!(
        e.to_string(),
        format!(
            "binlake@127.0.0.1:13310 cannot be captured until this is fixed:\n  - {LOG_BIN_OFF}"
        )
    );
}

#[tokio::test]
async fn binlog_format_other_than_row_is_refused_and_row_images_other_than_full_are_not() {
    let db = AltMariaDb::start(
        "statement",
        13311,
        "binlog_format = STATEMENT\nbinlog_row_image = MINIMAL",
    );
    let cfg = db.capture_source();
    let target = cfg.describe();
    let e = refused(&cfg, Filter::default()).await;
    // MINIMAL row images are no problem (their left-out columns are marked absent).
    assert_eq!(requirement(&e, &target), vec![format_problem("STATEMENT")]);

    // Changed the way the message says (nobody else uses this instance).
    let mut admin = db.admin().await;
    admin
        .query_drop("SET GLOBAL binlog_format = 'MIXED', GLOBAL binlog_row_image = 'NOBLOB'")
        .await
        .unwrap();
    let e = refused(&cfg, Filter::default()).await;
    assert_eq!(requirement(&e, &target), vec![format_problem("MIXED")]);

    // Fixed as told, capture starts, with NOBLOB and with MINIMAL.
    admin
        .query_drop("SET GLOBAL binlog_format = 'ROW'")
        .await
        .unwrap();
    open(&cfg, StartFrom::End, Filter::default())
        .await
        .expect("capture starts with binlog_row_image = NOBLOB");
    admin
        .query_drop("SET GLOBAL binlog_row_image = 'MINIMAL'")
        .await
        .unwrap();
    open(&cfg, StartFrom::End, Filter::default())
        .await
        .expect("capture starts with binlog_row_image = MINIMAL");
}

/// Recreates `user`@127.0.0.1 (password `pw`) with `grants`, run as the admin.
async fn user_with(
    db: &AltMariaDb,
    admin: &mut mysql_async::Conn,
    user: &str,
    grants: &[&str],
) -> SourceConfig {
    admin
        .query_drop(format!(
            "DROP USER IF EXISTS '{user}'@'127.0.0.1'; CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'"
        ))
        .await
        .unwrap();
    for g in grants {
        admin
            .query_drop(g.replace("{user}", &format!("'{user}'@'127.0.0.1'")))
            .await
            .unwrap();
    }
    db.source(user, "pw")
}

#[tokio::test]
async fn missing_grants_are_named_as_statements_to_run() {
    let db = AltMariaDb::start("grants", 13312, "");
    let mut admin = db.admin().await;
    admin
        .query_drop("CREATE DATABASE IF NOT EXISTS shop; CREATE DATABASE IF NOT EXISTS crm")
        .await
        .unwrap();

    // No privileges at all: one statement grants everything, and it runs as given.
    let cfg = user_with(&db, &mut admin, "bl_none", &[]).await;
    let e = refused(&cfg, Filter::default()).await;
    let problems = requirement(&e, "bl_none@127.0.0.1:13312");
    let statement = "GRANT REPLICATION SLAVE, BINLOG MONITOR, SHOW DATABASES, SELECT ON *.* TO 'bl_none'@'127.0.0.1';";
    assert_eq!(
        problems,
        vec![format!(
            "the account 'bl_none'@'127.0.0.1' lacks privileges binlake needs: REPLICATION SLAVE (to read the binlog), BINLOG MONITOR (to read the binlog position with SHOW MASTER STATUS), SHOW DATABASES (to list the databases to snapshot), SELECT (to snapshot tables and read their schemas). As an administrator, run:\n      {statement}"
        )]
    );
    admin.query_drop(statement).await.unwrap();
    open(&cfg, StartFrom::End, Filter::default())
        .await
        .expect("capture starts after the GRANT binlake printed");

    // Some global privileges: only the missing ones are named.
    let cfg = user_with(
        &db,
        &mut admin,
        "bl_some",
        &["GRANT REPLICATION SLAVE, SELECT ON *.* TO {user}"],
    )
    .await;
    let e = refused(&cfg, Filter::default()).await;
    assert_eq!(
        requirement(&e, "bl_some@127.0.0.1:13312"),
        vec!["the account 'bl_some'@'127.0.0.1' lacks privileges binlake needs: BINLOG MONITOR (to read the binlog position with SHOW MASTER STATUS), SHOW DATABASES (to list the databases to snapshot). As an administrator, run:\n      GRANT BINLOG MONITOR, SHOW DATABASES ON *.* TO 'bl_some'@'127.0.0.1';".to_string()]
    );

    // SELECT on shop.* is enough to capture shop, not crm.
    let cfg = user_with(
        &db,
        &mut admin,
        "bl_shop",
        &[
            "GRANT REPLICATION SLAVE, BINLOG MONITOR, SHOW DATABASES ON *.* TO {user}",
            "GRANT SELECT ON shop.* TO {user}",
        ],
    )
    .await;
    open(&cfg, StartFrom::End, only("shop"))
        .await
        .expect("SELECT on shop.* is enough for shop");
    let crm_problem = "the account 'bl_shop'@'127.0.0.1' lacks privileges binlake needs: SELECT on `crm`.* (to snapshot its tables). As an administrator, run:\n      GRANT SELECT ON `crm`.* TO 'bl_shop'@'127.0.0.1';";
    let e = refused(&cfg, only("crm")).await;
    assert_eq!(
        requirement(&e, "bl_shop@127.0.0.1:13312"),
        vec![crm_problem.to_string()]
    );
    // All databases (no filter): the same, shop is not named.
    let e = refused(&cfg, Filter::default()).await;
    assert_eq!(
        requirement(&e, "bl_shop@127.0.0.1:13312"),
        vec![crm_problem.to_string()]
    );

    // SELECT on one table of shop only: the server hides shop's other tables from the
    // account (SHOW TABLES, information_schema), so a snapshot would skip them while
    // their binlog rows still come. Refused, naming the GRANT; the table itself when the
    // include patterns name it.
    admin
        .query_drop(
            "CREATE TABLE IF NOT EXISTS shop.orders (id INT PRIMARY KEY); \
             CREATE TABLE IF NOT EXISTS shop.items (id INT PRIMARY KEY)",
        )
        .await
        .unwrap();
    let cfg = user_with(
        &db,
        &mut admin,
        "bl_orders",
        &[
            "GRANT REPLICATION SLAVE, BINLOG MONITOR, SHOW DATABASES ON *.* TO {user}",
            "GRANT SELECT ON shop.orders TO {user}",
        ],
    )
    .await;
    let e = refused(&cfg, only("shop")).await;
    let problems = requirement(&e, "bl_orders@127.0.0.1:13312");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("GRANT SELECT ON `shop`.* TO 'bl_orders'@'127.0.0.1';"),
        "{}",
        problems[0]
    );
    let named = |tables: &[&str]| {
        let include: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        Filter::new(&include, &[], &[]).unwrap()
    };
    let e = refused(&cfg, named(&["shop.orders", "shop.items"])).await;
    let problems = requirement(&e, "bl_orders@127.0.0.1:13312");
    assert!(
        problems[0].contains("SELECT on `shop`.`items`")
            && problems[0].contains("GRANT SELECT ON `shop`.`items` TO 'bl_orders'@'127.0.0.1';"),
        "{}",
        problems[0]
    );
    open(&cfg, StartFrom::End, named(&["shop.orders"]))
        .await
        .expect("SELECT on the one included table is enough");

    // ALL PRIVILEGES ON *.* covers everything.
    let cfg = user_with(
        &db,
        &mut admin,
        "bl_all",
        &["GRANT ALL PRIVILEGES ON *.* TO {user}"],
    )
    .await;
    open(&cfg, StartFrom::End, Filter::default())
        .await
        .expect("ALL PRIVILEGES is enough");

    // Through a role: counted when active, named when granted but not active.
    admin
        .query_drop(
            "DROP ROLE IF EXISTS bl_cdc; CREATE ROLE bl_cdc; \
             GRANT REPLICATION SLAVE, BINLOG MONITOR, SHOW DATABASES, SELECT ON *.* TO bl_cdc",
        )
        .await
        .unwrap();
    let cfg = user_with(&db, &mut admin, "bl_role", &["GRANT bl_cdc TO {user}"]).await;
    let e = refused(&cfg, Filter::default()).await;
    let activate = "SET DEFAULT ROLE `bl_cdc` FOR 'bl_role'@'127.0.0.1';";
    assert_eq!(
        requirement(&e, "bl_role@127.0.0.1:13312"),
        vec![format!(
            "the account 'bl_role'@'127.0.0.1' lacks privileges binlake needs: REPLICATION SLAVE (to read the binlog), BINLOG MONITOR (to read the binlog position with SHOW MASTER STATUS), SHOW DATABASES (to list the databases to snapshot), SELECT (to snapshot tables and read their schemas). As an administrator, run:\n      GRANT REPLICATION SLAVE, BINLOG MONITOR, SHOW DATABASES, SELECT ON *.* TO 'bl_role'@'127.0.0.1';\n    The account has roles that are not active at login, whose privileges do not count: `bl_cdc`. To use them instead, run:\n      {activate}"
        )]
    );
    admin.query_drop(activate).await.unwrap();
    open(&cfg, StartFrom::End, Filter::default())
        .await
        .expect("the default role's privileges count");
}

/// Reads until an error, failing on a timeout.
async fn first_error(r: &mut BinlogReader) -> Error {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Err(e) = r.next().await {
                return e;
            }
        }
    })
    .await
    .expect("an error within 10s")
}

#[tokio::test]
async fn purged_resume_position_says_to_resnapshot() {
    let db = AltMariaDb::start("purge", 13313, "");
    let cfg = db.capture_source();
    let target = cfg.describe();
    let mut admin = db.admin().await;
    admin
        .query_drop(
            "CREATE DATABASE IF NOT EXISTS p; \
             CREATE TABLE IF NOT EXISTS p.seq (id INT AUTO_INCREMENT PRIMARY KEY); \
             INSERT INTO p.seq VALUES ()",
        )
        .await
        .unwrap();
    let gtid: String = admin
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    let (file, pos): (String, u64) = admin
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get(0).unwrap(), r.get(1).unwrap()))
        .unwrap();
    // The transaction right after both positions goes into a file that is then purged.
    admin
        .query_drop("INSERT INTO p.seq VALUES ()")
        .await
        .unwrap();
    admin.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let current: String = admin
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| r.get(0).unwrap())
        .unwrap();
    // MariaDB keeps a file until its binlog checkpoint has passed (the commits in it are
    // durable in InnoDB): retry the purge until the file is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        admin
            .query_drop(format!("PURGE BINARY LOGS TO '{current}'"))
            .await
            .unwrap();
        let first: String = admin
            .query_first("SHOW BINARY LOGS")
            .await
            .unwrap()
            .map(|r: mysql_async::Row| r.get(0).unwrap())
            .unwrap();
        if first == current {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{first} still not purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let purged = |position: &str, reason: &str| {
        format!(
            "the resume position {position} is no longer in the binlog of {target} (purged): changes after it are lost to binlake. Re-snapshot the tables (snapshot mode `when_needed` does it automatically) and keep binlogs longer (binlog_expire_logs_seconds / expire_logs_days). Server said: {reason}"
        )
    };
    // The dump request is answered lazily: open() succeeds, the first read says why not.
    let at_gtid = ResumePosition::MariaDbGtids(gtid.parse().unwrap());
    let mut r = open(&cfg, StartFrom::Position(at_gtid), Filter::default())
        .await
        .expect("open");
    let e = first_error(&mut r).await;
    assert!(
        matches!(e, Error::PositionPurged { .. }) && !e.is_transient(),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        purged(
            &format!("mariadb-gtid:{gtid}"),
            "Server error: `ERROR 1236 (HY000): Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.'"
        )
    );
    assert_eq!(r.reconnects(), 0);

    // A file:pos in a purged file, and in a file that never existed.
    for (file, pos) in [(file.as_str(), pos), ("mariadb-bin.999999", 4)] {
        let position = ResumePosition::File(BinlogFilePos::new(file, pos));
        let mut r = open(&cfg, StartFrom::Position(position), Filter::default())
            .await
            .expect("open");
        let e = first_error(&mut r).await;
        assert!(
            matches!(e, Error::PositionPurged { .. }) && !e.is_transient(),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            purged(
                &format!("file:{file}:{pos}"),
                "Server error: `ERROR 1236 (HY000): Could not find first log file name in binary log index file'"
            )
        );
    }
}

#[tokio::test]
async fn server_id_in_use_stops_the_older_reader() {
    let name = unique("it_startup_sid");
    let cfg = capture_source();
    let mut older = open(&cfg, StartFrom::End, only(&name)).await.expect("open");
    // Same server_id: the primary drops the older connection.
    let mut newer = open(&cfg, StartFrom::End, only(&name)).await.expect("open");
    let e = first_error(&mut older).await;
    assert!(
        matches!(e, Error::ServerIdInUse { .. }) && !e.is_transient(),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "another replica of {} uses server_id {}: set source.server_id to an id no other server or replica uses",
            cfg.describe(),
            cfg.server_id
        )
    );
    assert_eq!(
        older.reconnects(),
        0,
        "the older reader must stop, not fight back"
    );

    // The newer one keeps streaming.
    let mut admin = admin_conn().await;
    admin
        .query_drop(format!(
            "CREATE DATABASE {name}; CREATE TABLE {name}.t (id INT PRIMARY KEY); INSERT INTO {name}.t VALUES (1)"
        ))
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let BinlogItem::Change(c) = newer.next().await.expect("newer reader") {
                return c;
            }
        }
    })
    .await
    .expect("the newer reader gets the insert");
    assert_eq!(change.table.database, name);
    assert_eq!(newer.reconnects(), 0);
    admin
        .query_drop(format!("DROP DATABASE {name}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn unreachable_server_and_wrong_password() {
    // Nothing listens on 13319 (reserved for these tests, never started).
    let mut cfg = capture_source();
    cfg.port = 13319;
    let e = refused(&cfg, Filter::default()).await;
    assert!(
        matches!(e, Error::Connect { .. }) && e.is_transient(),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "cannot connect to MySQL/MariaDB at binlake@127.0.0.1:13319: Input/output error: Connection refused (os error 111); check that the server is running and listens on 127.0.0.1:13319 (source.host, source.port), and that no firewall is in the way"
    );

    let mut cfg = capture_source();
    cfg.password = Some(binlake_core::Secret::new("not-the-password"));
    let e = connect(&cfg).await.expect_err("wrong password");
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert!(!e.is_transient(), "a wrong password is not retried: {e}");
    assert_eq!(
        e.to_string(),
        format!(
            "cannot connect to MySQL/MariaDB at binlake@127.0.0.1:{}: Server error: `ERROR 1045 (28000): Access denied for user 'binlake'@'127.0.0.1' (using password: YES)'; the server refused the user name or password: check source.user and source.password",
            cfg.port
        )
    );
    assert!(!e.to_string().contains("not-the-password"));
}
