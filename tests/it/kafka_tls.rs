//! Kafka over TLS, through the test broker's TLS listeners (certificates made by
//! `tests/services/kafka.sh` with openssl): `capture` and `materialize` (the real binary)
//! over SSL with the broker's certificate and host name verified, over mTLS (a client
//! certificate and key given as PEM text from the environment, as the Helm chart's
//! `kafka.clientSecrets` passes them) and over SASL_SSL with SCRAM-SHA-512 each bring every insert, update and
//! delete of the primary to the replica. A CA that did not sign the broker's certificate,
//! no client certificate on the listener that requires one, and a wrong SCRAM password
//! each stop both with an error that names the setting to fix, not a stall.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::capture::{CaptureProcess, setup_db, write_config_at};
use crate::lake::{lake_at, wait_equal};
use crate::services::{KafkaTls, kafka_tls, make_ca, unique};

/// The variable the configs take the SASL password (or the client key) from (`${…}`
/// substitution).
const PASSWORD_ENV: &str = "BINLAKE_IT_KAFKA_PASSWORD";
/// The variable the mTLS config takes the client certificate from.
const CERT_ENV: &str = "BINLAKE_IT_KAFKA_CERT";

/// A config for `db.*` through `brokers` with `client` as its `[kafka.client]`, and the
/// lake in `root`.
fn config(name: &str, db: &str, brokers: &str, root: &Path, client: &str) -> PathBuf {
    let extra = format!(
        "[lake]\nroot = \"{}\"\nflush_interval = \"200ms\"\nbuckets = 4\n[kafka.client]\n{client}",
        root.display()
    );
    write_config_at(name, db, brokers, &extra)
}

/// TLS with the broker's certificate checked against `ca`, and its host name.
fn verified(ca: &Path) -> String {
    format!(
        "\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"{}\"\n\"ssl.endpoint.identification.algorithm\" = \"https\"\n",
        ca.display()
    )
}

/// The client certificate and key as PEM text from the environment (`ssl.certificate.pem`,
/// `ssl.key.pem`), as the Helm chart's `kafka.clientSecrets` passes them.
fn mutual(tls: &KafkaTls) -> String {
    format!(
        "{}\"ssl.certificate.pem\" = \"${{{CERT_ENV}}}\"\n\"ssl.key.pem\" = \"${{{PASSWORD_ENV}}}\"\n",
        verified(&tls.ca),
    )
}

fn scram(tls: &KafkaTls) -> String {
    format!(
        "\"security.protocol\" = \"SASL_SSL\"\n\"ssl.ca.location\" = \"{}\"\n\"ssl.endpoint.identification.algorithm\" = \"https\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{}\"\n\"sasl.password\" = \"${{{PASSWORD_ENV}}}\"\n",
        tls.ca.display(),
        tls.scram_user
    )
}

/// Capture and materialize through `brokers`, with `password` in `PASSWORD_ENV` (and
/// `cert` in `CERT_ENV`); the replica must equal the primary after a snapshot and some
/// inserts, updates and deletes. Neither logs `password`.
async fn replicates_through(what: &str, brokers: &str, client: &str, password: &str, cert: &str) {
    let db = unique("it_ktls");
    let name = unique("itktls");
    let root = std::env::temp_dir().join(unique("binlake-ktls"));
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"]).await;
    c.query_drop("INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        .await
        .unwrap();
    let cfg = config(&name, &db, brokers, &root, client);
    let env = [
        (PASSWORD_ENV, password.to_string()),
        (CERT_ENV, cert.to_string()),
    ];
    let start = move |command: &'static str,
                      needle: &'static str,
                      cfg: PathBuf,
                      env: [(&'static str, String); 2]| {
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut p = CaptureProcess::start_command_env(command, &cfg, &env);
            p.wait_for(needle, Duration::from_secs(60));
            p
        })
    };
    let capture = start("capture", "streaming changes", cfg.clone(), env.clone())
        .await
        .unwrap();
    let materialize = start("materialize", "materializing changes", cfg.clone(), env)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO t VALUES (4, 'four'), (5, 'five')",
        "UPDATE t SET v = 'TWO' WHERE id = 2",
        "DELETE FROM t WHERE id = 3",
        "UPDATE t SET v = 'FIVE' WHERE id = 5",
        "DELETE FROM t WHERE id = 1",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let lake = lake_at(&root);
    let rows = wait_equal(&lake, &db, "t", "id", Duration::from_secs(90)).await;
    assert_eq!(rows.len(), 3, "{what}: {rows:?}");
    for p in [capture, materialize] {
        let (code, log) = tokio::task::spawn_blocking(move || p.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(code, Some(0), "{what}: {log}");
        assert!(
            !log.contains(password),
            "{what}: the password was logged:\n{log}"
        );
    }
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_and_materialize_over_tls_verifying_the_broker() {
    let tls = kafka_tls();
    replicates_through(
        "SSL",
        &tls.ssl_brokers,
        &verified(&tls.ca),
        "unused-password",
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_and_materialize_over_mtls_with_a_client_certificate() {
    let tls = kafka_tls();
    let cert = std::fs::read_to_string(&tls.client_cert).unwrap();
    let key = std::fs::read_to_string(&tls.client_key).unwrap();
    replicates_through("mTLS", &tls.mtls_brokers, &mutual(&tls), &key, &cert).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_and_materialize_over_sasl_ssl_with_scram_sha_512() {
    let tls = kafka_tls();
    replicates_through(
        "SASL_SSL",
        &tls.sasl_ssl_brokers,
        &scram(&tls),
        &tls.scram_password,
        "",
    )
    .await;
}

/// Runs `binlake <command>` with `cfg` and returns its exit code and log once it stops
/// by itself (at most 90 s: a stall fails the test).
fn stops(command: &str, cfg: &Path, password: &str) -> (Option<i32>, String) {
    CaptureProcess::start_command_env(command, cfg, &[(PASSWORD_ENV, password)])
        .wait_exit(Duration::from_secs(90))
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_misconfigurations_stop_capture_and_materialize_with_what_to_fix() {
    let tls = kafka_tls();
    let db = unique("it_ktls_bad");
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let dir = std::env::temp_dir().join(unique("binlake-ktls-bad"));
    std::fs::create_dir_all(&dir).unwrap();
    // A CA of its own, which did not sign the broker's certificate.
    let wrong_ca = make_ca(&dir, "other", false);
    let no_cert = verified(&tls.ca); // on the listener that requires a client certificate
    let wrong_password = "not-the-scram-password";
    let cases: Vec<(&str, &str, String, &str, &[&str])> = vec![
        (
            "wrong CA",
            tls.ssl_brokers.as_str(),
            verified(&wrong_ca),
            "unused-password",
            &[
                "does not trust the Kafka broker's TLS certificate",
                "ssl.ca.location",
            ],
        ),
        (
            "no client certificate",
            tls.mtls_brokers.as_str(),
            no_cert,
            "unused-password",
            &[
                "refused binlake's TLS client certificate",
                "ssl.certificate.location",
                "ssl.key.location",
            ],
        ),
        (
            "wrong SCRAM password",
            tls.sasl_ssl_brokers.as_str(),
            scram(&tls),
            wrong_password,
            &["refused binlake's credentials", "sasl.password"],
        ),
    ];
    let mut runs = Vec::new();
    for (what, brokers, client, password, needles) in cases {
        for command in ["capture", "materialize"] {
            let cfg = config(
                &unique("itktlsbad"),
                &db,
                brokers,
                &dir.join(unique("lake")),
                &client,
            );
            let password = password.to_string();
            let run = tokio::task::spawn_blocking(move || stops(command, &cfg, &password));
            runs.push((what, command, needles, run));
        }
    }
    for (what, command, needles, run) in runs {
        let (code, log) = run.await.unwrap();
        assert_eq!(
            code,
            Some(1),
            "{what}: {command} should stop with an error:\n{log}"
        );
        let last = log.lines().last().unwrap_or_default();
        for n in needles {
            assert!(
                last.contains(n),
                "{what}: {command}'s error should say `{n}`:\n{last}\n(whole log:\n{log})"
            );
        }
        assert!(
            !log.contains(wrong_password),
            "{what}: the password was logged:\n{log}"
        );
    }
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
