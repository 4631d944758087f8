//! The `binlake` binary itself: `--help`, `--version`, `validate`, `binlog dump` of corrupt files.

use std::process::Command;

fn binlake() -> Command {
    Command::new(env!("CARGO_BIN_EXE_binlake"))
}

fn write_config(text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(crate::services::unique("binlake-it-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("binlake.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn help_and_version() {
    let out = binlake().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("validate"), "{help}");
    let out = binlake().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("binlake {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn validate_names_every_mistake_with_its_path_and_exits_2() {
    let path = write_config(
        r#"
name = "shop"
[source]
host = "127.0.0.1"
user = "binlake"
password = "${BINLAKE_IT_SECRET}"
prot = 3306
server_id = 0
[kafka]
bootstrap_servers = "127.0.0.1:9092"
request_timeout = "soon"
"#,
    );
    let out = binlake()
        .arg("validate")
        .arg(&path)
        .env("BINLAKE_IT_SECRET", "s3cr3t-value")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "3 problems",
        "source.prot: unknown field",
        "source.server_id: must be > 0",
        "kafka.request_timeout:",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    assert!(!stderr.contains("s3cr3t-value"), "{stderr}");
}

/// `[source.masking]` mistakes: a hash without its salt, zero characters, a bad pattern.
#[test]
fn validate_names_masking_mistakes() {
    let path = write_config(
        r#"
name = "shop"
[source]
host = "127.0.0.1"
user = "binlake"
[source.masking]
mask_with_chars = { "shop.users.phone" = 0 }
truncate_to_chars = { "shop.[users.notes" = 10 }
hash_sha256 = ["shop.users.email"]
"#,
    );
    let out = binlake().arg("validate").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "3 problems",
        "source.masking.mask_with_chars.\"shop.users.phone\"",
        "source.masking.hash_salt: hash_sha256 needs a salt",
        "`shop.[users.notes` is not a valid pattern",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
}

#[test]
fn validate_never_echoes_a_malformed_or_unterminated_secret_and_exits_2() {
    for (text, secret) in [
        (
            "name = \"shop\"\n[source]\nhost = \"db\"\nuser = \"u\"\npassword = 73519024\n",
            "73519024",
        ),
        (
            "name = \"shop\"\n[source]\nhost = \"db\"\nuser = \"u\"\n[lake.storage]\naws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG\n",
            "wJalrXUtnFEMI",
        ),
    ] {
        let path = write_config(text);
        let out = binlake().arg("validate").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains(secret), "`{secret}` echoed:\n{stderr}");
        assert!(
            stderr.contains("source.password") || stderr.contains("aws_secret_access_key = ***"),
            "{stderr}"
        );
    }
}

/// Runs `binlake <args> <config>` for at most 60 s: its exit code (None: killed) and stderr.
fn run_for_a_while(args: &[&str], config: &std::path::Path) -> (Option<i32>, String) {
    let mut child = binlake()
        .args(args)
        .arg(config)
        .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_duration_out_of_range_stops_every_command_with_exit_2_not_a_panic() {
    // A config that would otherwise run against the test MariaDB.
    let port = std::env::var("BINLAKE_MARIADB_PORT").unwrap_or_else(|_| "13306".into());
    let server_id = crate::services::capture_source().server_id;
    let root = std::env::temp_dir().join(crate::services::unique("binlake-it-cli-lake"));
    let path = write_config(&format!(
        r#"
name = "{name}"
[source]
host = "127.0.0.1"
port = {port}
user = "binlake"
password = "${{BINLAKE_IT_MYSQL_PASSWORD}}"
server_id = {server_id}
include = ["it_cli_nothing.*"]
[lake]
root = "{root}"
flush_interval = "500000000000y"
[capture]
transaction_timeout = "30d"
"#,
        name = crate::services::unique("itclidur"),
        root = root.display(),
    ));
    for args in [
        &["validate"][..],
        &["run", "--config"],
        &["status", "--config"],
    ] {
        let (code, stderr) = run_for_a_while(args, &path);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        for needle in [
            "lake.flush_interval: must be between 10ms and 1h",
            "capture.transaction_timeout: must be between 1s and 15m (Kafka's transaction.max.timeout.ms default)",
        ] {
            assert!(
                stderr.contains(needle),
                "{args:?}: missing `{needle}` in:\n{stderr}"
            );
        }
    }
}

#[test]
fn validate_accepts_a_good_config_without_printing_secrets() {
    let path = write_config(
        r#"
name = "shop"
[source]
host = "127.0.0.1"
user = "binlake"
password = "${BINLAKE_IT_SECRET}"
"#,
    );
    let out = binlake()
        .arg("validate")
        .arg(&path)
        .env("BINLAKE_IT_SECRET", "s3cr3t-value")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("binlake@127.0.0.1:3306"), "{stdout}");
    assert!(!stdout.contains("s3cr3t-value"), "{stdout}");
}

/// `binlake validate … | head -1`: the reader goes away, binlake ends quietly (exit 0, no
/// panic), like every command that prints an answer.
#[test]
fn validate_and_binlog_dump_stop_quietly_on_a_closed_stdout() {
    let path = write_config(
        r#"
name = "shop"
[source]
host = "127.0.0.1"
user = "binlake"
"#,
    );
    let dir = std::env::temp_dir().join(crate::services::unique("binlake-it-dump"));
    std::fs::create_dir_all(&dir).unwrap();
    let binlog = dir.join("mariadb-bin.000001");
    std::fs::write(&binlog, sample_binlog().0).unwrap();
    for args in [
        vec!["validate".to_string(), path.display().to_string()],
        vec!["binlog".into(), "dump".into(), binlog.display().to_string()],
    ] {
        let mut child = binlake()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("error"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn validate_of_a_missing_file_or_bad_toml_exits_2() {
    let out = binlake()
        .args(["validate", "/nonexistent/binlake.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
    let path = write_config("name = \n");
    let out = binlake().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid TOML"));
}

#[test]
fn the_readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let fence = "`".repeat(3);
    let open = format!("{fence}toml\n");
    let start = readme.find(&open).expect("a toml block in the README") + open.len();
    let end = start + readme[start..].find(&fence).unwrap();
    let path = write_config(&readme[start..end]);
    let out = binlake()
        .arg("validate")
        .arg(&path)
        .env("BINLAKE_MYSQL_PASSWORD", "x")
        .env("KAFKA_PASSWORD", "y")
        .env("S3_KEY", "k")
        .env("S3_SECRET", "s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README's config example does not validate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A MariaDB binlog kept in the repository, and the offset and size of its events.
fn sample_binlog() -> (Vec<u8>, Vec<(usize, usize)>) {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("connectors/mysql/src/binlog/testdata/mariadb-10.11-compressed.000002"),
    )
    .unwrap();
    let mut events = Vec::new();
    let mut at = 4;
    while at + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        events.push((at, size));
        at += size;
    }
    assert_eq!(at, bytes.len());
    (bytes, events)
}

/// Runs `binlake binlog dump` on `bytes` written to a file; its exit code and stderr.
fn dump(name: &str, bytes: &[u8]) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(crate::services::unique("binlake-it-dump"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = binlake()
        .args(["binlog", "dump"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn binlog_dump_of_a_truncated_file_names_the_offset() {
    let (bytes, events) = sample_binlog();
    let (at, size) = events[events.len() / 2];
    let (code, stderr, path) = dump("truncated.000002", &bytes[..at + size / 2]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{path}:{at}")), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
}

#[test]
fn binlog_dump_of_a_huge_or_tiny_event_size_names_the_offset() {
    let (bytes, events) = sample_binlog();
    let (at, _) = events[events.len() / 2];
    for size in [0x7FFF_FF00u32, 7] {
        let mut corrupt = bytes.clone();
        corrupt[at + 9..at + 13].copy_from_slice(&size.to_le_bytes());
        let (code, stderr, path) = dump("corrupt.000002", &corrupt);
        assert_eq!(code, Some(1), "size {size}: {stderr}");
        assert!(stderr.contains(&format!("{path}:{at}")), "{stderr}");
        assert!(stderr.contains(&format!("event size {size}")), "{stderr}");
    }
}

#[test]
fn binlog_dump_of_random_bytes_after_the_magic_is_an_error() {
    let mut bytes = b"\xfebin".to_vec();
    // A fixed pseudo-random sequence (xorshift), so a failure repeats.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(x as u8);
    }
    let (code, stderr, path) = dump("random.000001", &bytes);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{path}:4")), "{stderr}");
}
