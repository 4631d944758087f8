#!/usr/bin/env bash
# Python venv for tests that read binlake's output (Delta tables, Parquet files).
#
#   tests/services/python.sh start|install|stop|status|env
#   eval "$(tests/services/python.sh env)"   # exports BINLAKE_PYTHON, BINLAKE_DUCKDB_EXTENSION_DIR
#
# Uses the venv in ${BINLAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binlake}/venv (shared
# with tests/helm/check.sh, which keeps kubernetes-validate there) and installs the pinned
# packages below from PyPI when they are missing. A stamp file in the venv records what was
# installed, so a warm start starts no interpreter and calls neither pip nor the network.
#
# DuckDB cannot download extensions here (no network but the package registries), so its
# delta and httpfs (S3) extensions come from PyPI too (duckdb-extension-*, built for exactly
# this DuckDB version) and are installed into $BINLAKE_DUCKDB_EXTENSION_DIR (in the venv).
# Point DuckDB at that directory and they load by name, or autoload:
#   con = duckdb.connect(config={"extension_directory": os.environ["BINLAKE_DUCKDB_EXTENSION_DIR"]})
#   con.sql("SELECT * FROM delta_scan('/path/to/table')")
#   con.sql("CREATE SECRET (TYPE s3, KEY_ID '...', SECRET '...', REGION 'us-east-1',"
#           " ENDPOINT '127.0.0.1:19000', URL_STYLE 'path', USE_SSL false)")
#   con.sql("SELECT * FROM delta_scan('s3://binlake-test/some/table')")
# The deltalake package reads Delta tables without DuckDB: DeltaTable(uri).to_pyarrow_table();
# so does polars: polars.read_delta(uri).
#
# Apache Spark (pyspark) with Delta Lake (delta-spark) reads them too; Spark runs on the
# machine's Java (17, which Kafka needs too). Delta's JVM jars come from Maven Central
# through Spark's Ivy, into $BINLAKE_SPARK_IVY (in the cache), fetched once by the smoke
# test here and found there by tests:
#   from delta import configure_spark_with_delta_pip
#   b = SparkSession.builder.master("local[1]").config("spark.jars.ivy", os.environ["BINLAKE_SPARK_IVY"])
#   b = b.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
#   spark = configure_spark_with_delta_pip(b).getOrCreate()
#   spark.read.format("delta").load("/path/to/table")
#
# `stop` is a no-op: nothing runs.
set -euo pipefail

log() { echo "[python] $*" >&2; }
die() { log "error: $*"; exit 1; }

# DuckDB and its extensions go together: duckdb-extension-NAME X requires duckdb==X.
DUCKDB_VERSION=1.5.5
DUCKDB_EXTENSIONS=(delta httpfs)
PKGS=(
    "duckdb==$DUCKDB_VERSION"
    "duckdb-extension-delta==$DUCKDB_VERSION"
    "duckdb-extension-httpfs==$DUCKDB_VERSION"
    "pyarrow==26.0.1"
    "pandas==3.1.1"
    "numpy==2.4.6"
    "deltalake==1.6.6"
    "polars==2.2.0"
    # delta-spark X.Y goes with pyspark X.Y; its jars (delta-spark_2.13) are fetched by
    # Spark at session start, into IVY below.
    "pyspark==4.0.1"
    "delta-spark==4.0.0"
)
DELTA_SPARK_JAR=io.delta_delta-spark_2.13-4.0.0.jar

CACHE=${BINLAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binlake}
VENV=${BINLAKE_VENV:-$CACHE/venv}
PY=$VENV/bin/python
STAMP=$VENV/.binlake-test-packages # the pinned list the venv was last installed with
EXT_DIR=$VENV/duckdb-extensions     # DuckDB extension_directory: v<version>/<platform>/NAME.duckdb_extension
IVY=$CACHE/ivy                      # Spark's Ivy home: Delta's jars from Maven Central
LOCK=$CACHE/.venv.lock
PIP_LOG=$CACHE/venv-pip.log

wanted() { printf '%s\n' "${PKGS[@]}"; }

# The venv's site-packages (python3.X depends on the interpreter the venv was made with).
site_packages() {
    local d
    for d in "$VENV"/lib/python3.*/site-packages; do
        [[ -d $d ]] && { echo "$d"; return 0; }
    done
    return 1
}

extensions_installed() {
    local e
    for e in "${DUCKDB_EXTENSIONS[@]}"; do
        compgen -G "$EXT_DIR/v$DUCKDB_VERSION/*/$e.duckdb_extension" >/dev/null || return 1
    done
}

# Fast check, no interpreter start: the stamp matches, every pinned package's dist-info is
# there and so is every extension.
installed() {
    [[ -x $PY && -f $STAMP && $(<"$STAMP") == "$(wanted)" ]] || return 1
    local site p name ver
    site=$(site_packages) || return 1
    for p in "${PKGS[@]}"; do
        name=${p%%==*}
        ver=${p#*==}
        compgen -G "$site/${name//-/_}-$ver.dist-info" >/dev/null || return 1
    done
    extensions_installed && [[ -f $IVY/jars/$DELTA_SPARK_JAR ]]
}

# Copy the extensions that the pip packages ship into EXT_DIR (DuckDB's INSTALL '<file>').
install_extensions() {
    rm -rf "$EXT_DIR"
    PYTHONDONTWRITEBYTECODE=1 "$PY" - "$EXT_DIR" "${DUCKDB_EXTENSIONS[@]}" <<'EOF'
import importlib, pathlib, sys
import duckdb
ext_dir, names = sys.argv[1], sys.argv[2:]
con = duckdb.connect(config={"extension_directory": ext_dir})
version = con.sql("PRAGMA version").fetchone()[0]
for name in names:
    pkg = pathlib.Path(importlib.import_module(f"duckdb_extension_{name}").__file__).parent
    f = pkg / "extensions" / version / f"{name}.duckdb_extension"
    if not f.is_file():
        sys.exit(f"{f} is missing: duckdb-extension-{name} does not match duckdb {version}")
    con.sql(f"FORCE INSTALL '{f}'")
EOF
}

# Imports everything, writes a Delta table with deltalake, reads it back with deltalake,
# with DuckDB's delta_scan (autoloaded from EXT_DIR, never downloaded) and, with `spark`,
# with Spark (fetching Delta's jars into IVY the first time), loads httpfs.
smoke_test() {
    local tmp rc=0
    tmp=$(mktemp -d)
    PYTHONDONTWRITEBYTECODE=1 "$PY" - "$tmp/t" "$EXT_DIR" "$IVY" "${1:-}" <<'EOF' || rc=$?
import sys
import duckdb, pandas, polars, pyarrow, deltalake
path, ext_dir, ivy, spark = sys.argv[1:5]
deltalake.write_deltalake(path, pyarrow.table({"id": [1, 2, 3], "v": ["a", "b", "c"]}))
assert deltalake.DeltaTable(path).to_pyarrow_table().num_rows == 3
assert polars.read_delta(path).height == 3
con = duckdb.connect(config={"extension_directory": ext_dir, "autoinstall_known_extensions": False})
n = con.sql(f"SELECT count(*) FROM delta_scan('{path}')").fetchone()[0]
assert n == 3, n
con.sql("LOAD httpfs")
import pyspark
if spark:
    from pyspark.sql import SparkSession
    from delta import configure_spark_with_delta_pip
    b = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "1")
         .config("spark.databricks.delta.snapshotPartitions", "1")
         .config("spark.jars.ivy", ivy)
         .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
         .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"))
    s = configure_spark_with_delta_pip(b).getOrCreate()
    n = s.read.format("delta").load(path).count()
    assert n == 3, n
    s.stop()
print(f"duckdb {duckdb.__version__} (delta and httpfs load), pyarrow {pyarrow.__version__}, "
      f"pandas {pandas.__version__}, deltalake {deltalake.__version__}, polars {polars.__version__}, pyspark {pyspark.__version__}"
      + (" (read it with Delta)" if spark else ""))
EOF
    rm -rf "$tmp"
    return "$rc"
}

cmd_start() {
    if installed; then
        log "ready: $PY"
        return 0
    fi
    mkdir -p "$CACHE"
    # Serialize concurrent installs into the same venv.
    exec 9>"$LOCK"
    flock -w 900 9 || die "could not lock $LOCK"
    if installed; then
        log "ready: $PY"
        return 0
    fi
    if [[ ! -x $PY ]]; then
        command -v python3 >/dev/null || die "python3 not found (Debian: apt-get install python3 python3-venv)"
        log "creating venv $VENV"
        python3 -m venv "$VENV" >&2 || die "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
    fi
    log "installing $(wanted | tr '\n' ' ')into $VENV (from PyPI; a minute or so the first time)"
    rm -f "$STAMP"
    if ! "$VENV/bin/pip" install --disable-pip-version-check --no-input --progress-bar off \
        "${PKGS[@]}" >"$PIP_LOG" 2>&1; then
        log "pip install failed; last lines of $PIP_LOG:"
        tail -n 30 "$PIP_LOG" >&2
        exit 1
    fi
    install_extensions || die "installing the DuckDB extensions into $EXT_DIR failed"
    log "reading a Delta table with Spark (fetches Delta's jars from Maven Central into $IVY the first time)"
    java -version >/dev/null 2>&1 || die "java not found: Spark needs Java 17 (Debian: apt-get install openjdk-17-jre-headless)"
    smoke_test spark >&2 || die "packages installed but the smoke test failed (see above)"
    wanted >"$STAMP"
    installed || die "installed, but a pinned package's metadata or an extension in $EXT_DIR is missing"
    log "ready: $PY"
}

cmd_status() {
    local out=
    if installed && out=$(smoke_test 2>&1); then
        echo "[python] ready: $PY: $out"
    else
        echo "[python] not installed (venv $VENV; run '$0 start')"
        [[ -z $out ]] || tail -n 5 <<<"$out"
        return 1
    fi
}

cmd_env() {
    echo "export BINLAKE_PYTHON=$PY"
    echo "export BINLAKE_DUCKDB_EXTENSION_DIR=$EXT_DIR"
    echo "export BINLAKE_SPARK_IVY=$IVY"
}

case ${1:-} in
start | install) cmd_start ;;
stop) log "nothing to stop" ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: $0 {start|install|stop|status|env}" >&2
    exit 2
    ;;
esac
