//! Decode throughput: binlog event bytes of sysbench-shaped rows
//! (`id INT, k INT, c CHAR(120), pad CHAR(60)`, utf8mb4) to `ChangeEvent`s, on one core,
//! against mysql_common's own row parsing of the same bytes (`RowsEventData::rows`), the
//! floor for anything built on the crate.
//!
//! The bytes are generated here (FORMAT_DESCRIPTION, then transactions of BEGIN, TABLE_MAP
//! with full metadata, WRITE_ROWS v2 events of ~8 KB as the server splits them, XID), and
//! the benchmark first checks that they decode to the rows it wrote.

use std::hint::black_box;

use binlake_core::{Flavor, Op, Value};
use binlake_mysql::binlog::{BinlogItem, Decoder, Filter, NoLookup};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mysql_common::binlog::EventStreamReader;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{EventData, FormatDescriptionEvent};
use mysql_common::proto::MySerialize;

const ROWS: usize = 200_000;
const ROWS_PER_TXN: usize = 1_000;

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn event(&mut self, ty: u8, body: &[u8]) {
        let size = 19 + body.len() as u32;
        let log_pos = self.out.len() as u32 + 4 + size;
        self.out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        self.out.push(ty);
        self.out.extend_from_slice(&1u32.to_le_bytes());
        self.out.extend_from_slice(&size.to_le_bytes());
        self.out.extend_from_slice(&log_pos.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes());
        self.out.extend_from_slice(body);
    }
}

fn lenenc(out: &mut Vec<u8>, n: u64) {
    if n < 251 {
        out.push(n as u8);
    } else {
        out.push(0xfc);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    }
}

fn table_map(table_id: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&table_id.to_le_bytes()[..6]);
    b.extend_from_slice(&1u16.to_le_bytes());
    for name in ["sbtest", "sbtest1"] {
        b.push(name.len() as u8);
        b.extend_from_slice(name.as_bytes());
        b.push(0);
    }
    lenenc(&mut b, 4);
    b.extend_from_slice(&[3, 3, 254, 254]); // LONG, LONG, STRING, STRING
    let meta = [
        0xfe ^ ((480u16 & 0x300) >> 4) as u8,
        (480 & 0xff) as u8, // CHAR(120) utf8mb4
        0xfe,
        240, // CHAR(60) utf8mb4
    ];
    lenenc(&mut b, meta.len() as u64);
    b.extend_from_slice(&meta);
    b.push(0b1100); // c, pad nullable
    // Optional metadata: signedness, default charset, column names, primary key.
    let field = |ty: u8, value: &[u8], b: &mut Vec<u8>| {
        b.push(ty);
        lenenc(b, value.len() as u64);
        b.extend_from_slice(value);
    };
    field(1, &[0b0000_0000], &mut b);
    field(2, &[45], &mut b);
    let mut names = Vec::new();
    for n in ["id", "k", "c", "pad"] {
        lenenc(&mut names, n.len() as u64);
        names.extend_from_slice(n.as_bytes());
    }
    field(4, &names, &mut b);
    field(8, &[0], &mut b);
    b
}

fn c_value(i: usize) -> String {
    (0..10)
        .map(|g| format!("{:011}", (i * 7919 + g * 104_729) % 100_000_000_000))
        .collect::<Vec<_>>()
        .join("-")
}

/// A binlog of `ROWS` sysbench rows in transactions of `ROWS_PER_TXN`.
fn sysbench_binlog() -> Vec<u8> {
    let mut w = Writer { out: Vec::new() };
    let mut fde = Vec::new();
    FormatDescriptionEvent::new(BinlogVersion::Version4)
        .with_server_version(b"10.11.6-MariaDB-log".to_vec())
        .serialize(&mut fde);
    fde.push(0); // checksum algorithm: off
    fde.extend_from_slice(&[0; 4]);
    w.event(15, &fde);
    let mut xid = 0u64;
    for txn_start in (0..ROWS).step_by(ROWS_PER_TXN) {
        let mut begin = Vec::new();
        begin.extend_from_slice(&7u32.to_le_bytes());
        begin.extend_from_slice(&0u32.to_le_bytes());
        begin.push(0);
        begin.extend_from_slice(&0u16.to_le_bytes());
        begin.extend_from_slice(&0u16.to_le_bytes());
        begin.push(0);
        begin.extend_from_slice(b"BEGIN");
        w.event(2, &begin);
        w.event(19, &table_map(42));
        let mut i = txn_start;
        let end = (txn_start + ROWS_PER_TXN).min(ROWS);
        while i < end {
            let mut b = Vec::new();
            b.extend_from_slice(&42u64.to_le_bytes()[..6]);
            b.extend_from_slice(&1u16.to_le_bytes());
            b.extend_from_slice(&2u16.to_le_bytes());
            lenenc(&mut b, 4);
            b.push(0b1111);
            while i < end && b.len() < 8000 {
                b.push(0); // no NULLs
                b.extend_from_slice(&(i as i32 + 1).to_le_bytes());
                b.extend_from_slice(&((i * 31 % 100_000) as i32).to_le_bytes());
                let c = c_value(i);
                b.extend_from_slice(&(c.len() as u16).to_le_bytes());
                b.extend_from_slice(c.as_bytes());
                let pad = "67847967377-48000963322-62604785301-91415491898-96926520291";
                b.push(pad.len() as u8);
                b.extend_from_slice(pad.as_bytes());
                i += 1;
            }
            w.event(30, &b);
        }
        xid += 1;
        w.event(16, &xid.to_le_bytes());
    }
    w.out
}

fn binlake_decode(bytes: &[u8], on_change: &mut dyn FnMut(&binlake_core::ChangeEvent)) -> usize {
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut decoder = Decoder::new(
        Flavor::MariaDb,
        Filter::default(),
        Box::new(NoLookup),
        "bench-bin.000001",
        None,
    );
    let mut input = bytes;
    let mut n = 0;
    while let Some(ev) = reader.read(&mut input).expect("event") {
        decoder
            .feed(&ev, &mut |item| {
                if let BinlogItem::Change(e) = item {
                    n += 1;
                    on_change(&e);
                }
                Ok(())
            })
            .expect("decode");
    }
    n
}

fn mysql_common_rows(bytes: &[u8]) -> usize {
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    let mut input = bytes;
    let mut n = 0;
    while let Some(ev) = reader.read(&mut input).expect("event") {
        if let Ok(Some(EventData::RowsEvent(rows))) = ev.read_data() {
            let tme = reader.get_tme(rows.table_id()).expect("table map");
            for row in rows.rows(tme) {
                black_box(row.expect("row"));
                n += 1;
            }
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let bytes = sysbench_binlog();
    // The bytes decode to what was written.
    let mut first = None;
    let n = binlake_decode(&bytes, &mut |e| {
        assert_eq!(e.op, Op::Create);
        if first.is_none() {
            first = e.after.clone();
        }
    });
    assert_eq!(n, ROWS);
    let first = first.expect("a row");
    assert_eq!(first[0], Value::Int(1));
    assert_eq!(first[2], Value::String(c_value(0)));
    assert_eq!(mysql_common_rows(&bytes), ROWS);

    let mut g = c.benchmark_group("decode_sysbench_rows");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    g.bench_function("binlake_events_to_change_events", |b| {
        b.iter(|| {
            binlake_decode(black_box(&bytes), &mut |e| {
                black_box(e);
            })
        })
    });
    g.bench_function("mysql_common_rows_floor", |b| {
        b.iter(|| mysql_common_rows(black_box(&bytes)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
