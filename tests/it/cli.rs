//! The `binlake` binary itself: `--help`, `--version`, `validate`.

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
