//! TLS to the source, against a MariaDB of its own whose certificate is signed by a CA made
//! here with openssl: a user that must use TLS connects and replicates with
//! `verify_identity`; a wrong CA, and TLS asked of a server that does not offer it, stop
//! with errors that say what to check.

use std::time::Duration;

use binlake_mysql::TlsMode;
use binlake_mysql::binlog::{BinlogItem, BinlogReader, NoLookup, StartFrom};
use binlake_mysql::{Error, connect};
use mysql_async::prelude::Queryable;

use crate::alt_mariadb::AltMariaDb;
use crate::services::{capture_source, make_ca, unique};

#[tokio::test(flavor = "multi_thread")]
async fn tls_verify_identity_replicates_and_misconfigurations_are_named() {
    let dir = std::env::temp_dir().join(unique("binlake-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = make_ca(&dir, "good", true);
    let wrong_ca = make_ca(&dir, "other", false);
    let cnf = format!(
        "ssl_ca = {}\nssl_cert = {}\nssl_key = {}",
        ca.display(),
        dir.join("server-cert.pem").display(),
        dir.join("server-key.pem").display()
    );
    let db = tokio::task::spawn_blocking(move || AltMariaDb::start("tls", 13317, &cnf))
        .await
        .unwrap();
    let mut admin = db.admin().await;
    for sql in [
        "CREATE USER IF NOT EXISTS 'tlsuser'@'127.0.0.1' IDENTIFIED BY 'tls-pw' REQUIRE SSL",
        "GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT, SHOW DATABASES ON *.* TO 'tlsuser'@'127.0.0.1'",
        "CREATE DATABASE IF NOT EXISTS tls_db",
        "DROP TABLE IF EXISTS tls_db.t",
        "CREATE TABLE tls_db.t (id INT PRIMARY KEY)",
    ] {
        admin.query_drop(sql).await.unwrap();
    }

    // Without TLS the user is refused (REQUIRE SSL): TLS is really what lets it in.
    let mut cfg = db.source("tlsuser", "tls-pw");
    let e = connect(&cfg)
        .await
        .expect_err("plain connection of a REQUIRE SSL user");
    assert!(e.to_string().contains("Access denied"), "{e}");
    assert!(
        e.to_string().contains("requires TLS") && e.to_string().contains("source.tls"),
        "a refused account on a server that offers TLS must point at source.tls: {e}"
    );
    // A wrong password on a server without TLS says nothing of TLS.
    let mut wrong = capture_source();
    wrong.password = Some(binlake_core::Secret::new("not-the-password"));
    let e = connect(&wrong).await.expect_err("wrong password");
    assert!(e.to_string().contains("source.password"), "{e}");
    assert!(!e.to_string().contains("requires TLS"), "{e}");

    // verify_identity with the right CA: connected over TLS, and replication works.
    cfg.tls = TlsMode::VerifyIdentity;
    cfg.tls_ca = Some(ca.clone());
    let mut conn = connect(&cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    assert!(
        cipher.is_some_and(|(_, c)| !c.is_empty()),
        "no TLS cipher in use"
    );
    let filter = binlake_mysql::binlog::Filter::new(&["tls_db.*".to_string()], &[], &[]).unwrap();
    let mut reader = BinlogReader::open(&cfg, StartFrom::End, filter, Box::new(NoLookup))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    admin
        .query_drop("INSERT INTO tls_db.t VALUES (7)")
        .await
        .unwrap();
    let row = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let BinlogItem::Change(e) = reader.next().await.unwrap() {
                return e;
            }
        }
    })
    .await
    .expect("the insert arrives over TLS");
    assert_eq!(row.table.table, "t");

    // A CA that did not sign the server's certificate.
    cfg.tls = TlsMode::VerifyCa;
    cfg.tls_ca = Some(wrong_ca);
    let e = connect(&cfg).await.expect_err("wrong CA");
    assert!(
        matches!(e, Error::Connect { .. }) && !e.is_transient(),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("TLS handshake failed") && e.to_string().contains("tls_ca"),
        "{e}"
    );

    // TLS asked of a server that does not offer it (the shared test server).
    let mut plain = capture_source();
    plain.tls = TlsMode::Required;
    let e = connect(&plain).await.expect_err("no TLS on the server");
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("does not offer TLS"), "{e}");
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
