#!/usr/bin/env bash
# `make demo`: binlake end to end on a fresh machine, in about a minute once built.
#
# 1. starts a private MariaDB (tests/services/mariadb.sh on port 13316, state in
#    .demo/, so it never touches the test instance),
# 2. creates a small shop schema with existing rows and starts a write workload,
# 3. runs `binlake run` (capture + materialize without Kafka) into ./demo-data,
# 4. shows the replicas catching up (`binlake status`), prints a `binlake query` result
#    and the freshness line, and says how to open the files with DuckDB or pandas.
#
# Everything it starts, it stops on exit. Run it again to start over (it deletes
# ./demo-data and the demo database first).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export BINLAKE_SERVICES_DIR=$REPO/.demo BINLAKE_MARIADB_PORT=13316
export BINLAKE_DEMO_PASSWORD=binlake
BIN=${BINLAKE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/binlake/target}/debug/binlake}
CONFIG=demo/binlake.toml
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting a private MariaDB on 127.0.0.1:13316"
tests/services/mariadb.sh start
SOCK=$BINLAKE_SERVICES_DIR/mariadb/mariadbd.sock
CLIENT=$(command -v mariadb || command -v mysql)
sql() { "$CLIENT" --socket="$SOCK" -ubinlake_admin -pbinlake-admin "$@"; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  tests/services/mariadb.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "creating the sample schema shop (customers, orders) with 1,000 existing orders"
rm -rf demo-data
sql <<'SQL'
DROP DATABASE IF EXISTS shop;
CREATE DATABASE shop;
USE shop;
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(60) NOT NULL, country CHAR(2),
  created_at DATETIME(3) NOT NULL);
CREATE TABLE orders (id BIGINT UNSIGNED PRIMARY KEY, customer_id INT NOT NULL,
  amount DECIMAL(12,2) NOT NULL, status ENUM('new','paid','shipped','cancelled') NOT NULL,
  items JSON, updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3));
INSERT INTO customers SELECT seq, CONCAT('customer ', seq), ELT(1 + seq % 4, 'DE', 'FR', 'US', 'JP'), NOW(3)
  FROM seq_1_to_100;
INSERT INTO orders (id, customer_id, amount, status, items)
  SELECT seq, 1 + seq % 100, ROUND(5 + (seq * 37 % 500) + (seq % 100) / 100, 2), 'paid',
         JSON_ARRAY(JSON_OBJECT('sku', CONCAT('sku-', seq % 17), 'qty', 1 + seq % 3))
  FROM seq_1_to_1000;
SQL

say "binlake run --config $CONFIG  (snapshot of existing rows, then the binlog)"
RUST_LOG=${RUST_LOG:-binlake=info} "$BIN" run --config "$CONFIG" 2> .demo/binlake.log &
pids+=($!)

say "write workload: new orders, status changes and cancellations for 15 s"
(
  end=$((SECONDS + 15)); id=1001
  while (( SECONDS < end )); do
    sql shop -e "INSERT INTO orders (id, customer_id, amount, status) VALUES ($id, 1 + $id % 100, 19.99, 'new');
                 UPDATE orders SET status = 'shipped' WHERE id = $((id - 500));
                 DELETE FROM orders WHERE id = $((id - 900)) AND status = 'paid';"
    id=$((id + 1)); sleep 0.05
  done
) &
workload=$!
pids+=($workload)

for _ in 1 2 3 4 5 6; do
  sleep 3
  say "binlake status --config $CONFIG"
  "$BIN" status --config "$CONFIG" 2>/dev/null || true
done
wait "$workload" || true
sleep 2

say "the primary vs the replica"
sql shop -e "SELECT status, COUNT(*) AS orders, SUM(amount) AS amount FROM orders GROUP BY status ORDER BY status"
"$BIN" query --config "$CONFIG" \
  "SELECT status, count(*) AS orders, sum(amount) AS amount FROM shop.orders GROUP BY status ORDER BY status"

say "the change log: every change, with its binlog position and commit time"
"$BIN" query --config "$CONFIG" \
  "SELECT __op AS op, count(*) AS changes, max(__commit_ts) AS last_commit FROM shop.orders__changes GROUP BY __op ORDER BY __op"

say "freshness"
"$BIN" status --config "$CONFIG" 2>/dev/null

cat <<'TXT'

== open the files yourself

  ./demo-data/shop/orders/replica   Delta table: the current rows
  ./demo-data/shop/orders/changes   Delta table: every change (__op, __commit_ts, __binlog_*)

  DuckDB:   INSTALL delta; LOAD delta;
            SELECT * FROM delta_scan('./demo-data/shop/orders/replica');
  pandas:   from deltalake import DeltaTable
            DeltaTable("./demo-data/shop/orders/replica").to_pandas()
  binlake:  binlake query --config demo/binlake.toml "SELECT * FROM shop.orders LIMIT 5"

TXT
