//! The cost of keeping a replica current, by table size and replica mode: one batch of
//! 2,000 updates of random keys (a second of a 2,000 rows/s workload) applied to a
//! replica of N sysbench-shaped rows (`id INT, k BIGINT, c CHAR(120), pad CHAR(60)`) on a
//! local folder, through `TableSink::apply` (Parquet encoding, Delta commit, and for
//! merge-on-read the key index and deletion vectors), without MariaDB or Kafka.
//!
//! Sizes: `BINLAKE_BENCH_REPLICA_ROWS` (default "100000 1000000"; ten times apart, so the
//! growth with the table shows; 10,000 and 100,000 when `cargo test` runs it once).
//! Besides criterion's time per batch, each size and mode prints the bytes written per
//! updated row and the replica's bytes per row. A filter (`-- merge_on_read`) leaves the
//! other mode unmeasured (it says so), not its table's fill.
//!
//! `cargo bench -p binlake-lake --bench replica_apply`

use std::sync::Arc;
use std::time::{Duration, Instant};

use binlake_core::schema::StringKind;
use binlake_core::{
    ChangeEvent, Column, ColumnType, EventPosition, Op, SourceInfo, TableSchema, Value,
};
use binlake_lake::table::{Change, Progress};
use binlake_lake::{Lake, LakeConfig, ReplicaMode, TableSink};
use criterion::{Criterion, criterion_group, criterion_main};

fn table() -> Arc<TableSchema> {
    let text = |len| ColumnType::String {
        kind: StringKind::Char,
        length: len,
        charset: "utf8mb4".into(),
        json: false,
    };
    Arc::new(TableSchema {
        database: "bench".into(),
        table: "sbtest1".into(),
        columns: vec![
            Column::new(
                "id",
                ColumnType::Integer {
                    bits: 32,
                    unsigned: false,
                },
                false,
            ),
            Column::new(
                "k",
                ColumnType::Integer {
                    bits: 64,
                    unsigned: false,
                },
                false,
            ),
            Column::new("c", text(120), false),
            Column::new("pad", text(60), false),
        ],
        primary_key: vec![0],
    })
}

/// sysbench's text: groups of 11 pseudo-random digits joined by `-`.
fn digits(seed: u64, groups: usize) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut s = String::with_capacity(groups * 12);
    for g in 0..groups {
        if g > 0 {
            s.push('-');
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{:011}", x % 100_000_000_000));
    }
    s
}

fn row(id: u64, k: i64) -> Vec<Value> {
    vec![
        Value::Int(id as i64),
        Value::Int(k),
        Value::String(digits(id ^ (k as u64) << 32, 10)),
        Value::String(digits(id.wrapping_add(k as u64), 5)),
    ]
}

fn change(
    t: &Arc<TableSchema>,
    op: Op,
    before: Option<Vec<Value>>,
    after: Vec<Value>,
    pos: u64,
) -> Change {
    Change {
        event: ChangeEvent {
            op,
            table: t.clone(),
            before,
            after: Some(after),
            source: SourceInfo {
                server_id: 1,
                gtid: None,
                position: EventPosition {
                    file: "bin.000001".into(),
                    pos,
                    row: 0,
                },
                ts_us: 1_700_000_000_000_000,
                snapshot: Default::default(),
                thread: None,
                query: None,
            },
            transaction: None,
        },
        kafka: None,
    }
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type().map(|t| t.is_dir()) {
                    Ok(true) => dir_bytes(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    // `cargo test --all-targets` runs each benchmark once: small tables there.
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<u64> = std::env::var("BINLAKE_BENCH_REPLICA_ROWS")
        .unwrap_or_else(|_| match benching {
            true => "100000 1000000".into(),
            false => "10000 100000".into(),
        })
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t = table();
    let mut g = c.benchmark_group("replica_apply");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for &rows in &sizes {
        for mode in [ReplicaMode::CopyOnWrite, ReplicaMode::MergeOnRead] {
            let dir = std::env::temp_dir().join(format!("binlake-bench-apply-{}", uuid_like()));
            let lake = Lake::open(&LakeConfig {
                root: dir.display().to_string(),
                replica_mode: mode,
                ..Default::default()
            })
            .expect("lake");
            let mut sink = rt.block_on(TableSink::open(&lake, &t)).expect("sink");
            let mut pos = 4u64;
            let mut txn = 0i64;
            let progress = |n: i64| Progress {
                txns: vec![("bench".into(), n)],
                file_token: format!("b{n}"),
                ..Progress::default()
            };
            // The table: inserts in ascending keys (appended, as a snapshot is).
            let t0 = Instant::now();
            let mut id = 1;
            while id <= rows {
                let hi = (id + 200_000).min(rows + 1);
                let batch: Vec<Change> = (id..hi)
                    .map(|i| {
                        pos += 1;
                        change(&t, Op::Read, None, row(i, -1), pos)
                    })
                    .collect();
                txn += 1;
                rt.block_on(sink.apply(&batch, &progress(txn), false, true))
                    .expect("fill");
                id = hi;
            }
            let replica = dir.join("bench").join("sbtest1").join("replica");
            let row_bytes = dir_bytes(&replica) as f64 / rows as f64;
            eprintln!(
                "replica_apply {} {rows} rows: filled in {:.1} s",
                mode.as_str(),
                t0.elapsed().as_secs_f64()
            );
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let (mut written, mut updated) = (0u64, 0u64);
            g.bench_function(format!("{}/{rows}", mode.as_str()), |b| {
                b.iter_custom(|iters| {
                    let mut took = Duration::ZERO;
                    for _ in 0..iters {
                        let batch: Vec<Change> = (0..2_000)
                            .map(|_| {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                let key = x % rows + 1;
                                pos += 1;
                                let k = pos as i64;
                                change(&t, Op::Update, Some(row(key, -1)), row(key, k), pos)
                            })
                            .collect();
                        txn += 1;
                        let t0 = Instant::now();
                        let stats = rt
                            .block_on(sink.apply(&batch, &progress(txn), false, true))
                            .expect("apply");
                        took += t0.elapsed();
                        written += stats.bytes_written;
                        updated += stats.keys;
                    }
                    took
                })
            });
            match updated {
                // A filter left this mode out: criterion ran no batch of it.
                0 => eprintln!(
                    "replica_apply {} {rows} rows: not measured (filtered out)",
                    mode.as_str()
                ),
                _ => eprintln!(
                    "replica_apply {} {rows} rows: {:.0} bytes written per updated row ({:.1}× the {:.0} bytes a row takes in the replica)",
                    mode.as_str(),
                    written as f64 / updated as f64,
                    written as f64 / updated as f64 / row_bytes,
                    row_bytes
                ),
            }
            drop(sink);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    g.finish();
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

criterion_group!(benches, bench);
criterion_main!(benches);
