//! Hostile binlog files: the MySQL and MariaDB fixture binlogs in `../shared/fixtures/binlogs`
//! with bytes flipped, event sizes changed, garbage spliced in and files cut short go
//! through the offline reader, the event framing, the decoder and the row decoders; any
//! outcome but a panic is fine, and an error names the file and an offset.
//!
//! `BINLAKE_FUZZ_CASES` sets the number of mutated files (default 20 000, a few seconds);
//! `make fuzz` runs many more. A missing fixture folder fails the test.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use binlake_core::Flavor;
use proptest::prelude::*;
use proptest::sample::Index;

use super::decoder::{DecodeError, Decoder};
use super::file::read_binlog;
use super::filter::Filter;
use crate::schema_history::SchemaHistory;

/// The fixture files (required: a missing folder fails the test).
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = crate::fixture("");
    let entries = std::fs::read_dir(&dir).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixture in {}", dir.display());
    // MariaDB's compressed events and GTID lists, kept in the repository.
    files.push((
        "mariadb-10.11-compressed.000002".into(),
        include_bytes!("testdata/mariadb-10.11-compressed.000002").to_vec(),
    ));
    files.push((
        "mariadb-10.11-gtid-list.000003".into(),
        include_bytes!("testdata/mariadb-10.11-gtid-list.000003").to_vec(),
    ));
    files
}

/// Offsets and sizes of the events of a well-formed binlog file.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 4;
    while at + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        if size < 19 || at + size > bytes.len() {
            break;
        }
        out.push((at, size));
        at += size;
    }
    out
}

/// Recomputes the CRC32 of every event that still frames, so that mutated bodies get past
/// checksum verification and reach the parsers.
fn fix_checksums(bytes: &mut [u8]) {
    for (at, size) in frames(bytes) {
        if size >= 23 {
            let sum = crc32fast::hash(&bytes[at..at + size - 4]);
            bytes[at + size - 4..at + size].copy_from_slice(&sum.to_le_bytes());
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte anywhere.
    Flip(Index, u8),
    /// XOR one byte inside an event's body (past its header).
    FlipBody(Index, Index, u8),
    /// Set an event's size field.
    EventSize(Index, u32),
    /// Cut the file.
    Truncate(Index),
    /// Overwrite bytes with random ones.
    Garbage(Index, Vec<u8>),
    /// Replace everything after the magic header with random bytes.
    RandomAfterMagic(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let size = prop_oneof![
        prop::sample::select(vec![
            0u32,
            1,
            7,
            18,
            19,
            20,
            22,
            23,
            24,
            0x7FFF_FF00,
            0xFFFF_FFFF,
            0x4000_0001
        ]),
        any::<u32>(),
        0u32..512,
    ];
    prop_oneof![
        1 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        3 => (any::<Index>(), any::<Index>(), 1u8..=255)
            .prop_map(|(e, i, x)| Mutation::FlipBody(e, i, x)),
        1 => (any::<Index>(), size).prop_map(|(e, s)| Mutation::EventSize(e, s)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Garbage(i, b)),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Mutation::RandomAfterMagic),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let events = frames(bytes);
    match m {
        Mutation::Flip(i, x) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes[at] ^= x;
        }
        Mutation::FlipBody(e, i, x) if !events.is_empty() => {
            let (at, size) = events[e.index(events.len())];
            if size > 19 {
                bytes[at + 19 + i.index(size - 19)] ^= x;
            }
        }
        Mutation::EventSize(e, s) if !events.is_empty() => {
            let (at, _) = events[e.index(events.len())];
            bytes[at + 9..at + 13].copy_from_slice(&s.to_le_bytes());
        }
        Mutation::Truncate(i) => {
            let at = i.index(bytes.len() + 1);
            bytes.truncate(at);
        }
        Mutation::Garbage(i, g) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            for (k, b) in g.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + k) {
                    *slot = *b;
                }
            }
        }
        Mutation::RandomAfterMagic(g) => {
            bytes.truncate(4);
            bytes.extend_from_slice(g);
        }
        _ => {}
    }
}

/// Decodes `bytes` as the file `name`; panics escape.
fn decode(name: &str, bytes: &[u8]) -> Result<(), DecodeError> {
    let head = &bytes[..bytes.len().min(256)];
    let flavor = if head.windows(7).any(|w| w == b"MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::Mysql
    };
    let mut decoder = Decoder::new(
        flavor,
        Filter::default().with_system_schemas(),
        Box::new(SchemaHistory::with_flavor(flavor)),
        name,
        None,
    );
    read_binlog(
        Cursor::new(bytes),
        Some(bytes.len() as u64),
        name,
        &mut decoder,
        &mut |_| Ok(()),
    )
}

fn cases() -> u32 {
    std::env::var("BINLAKE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn unmutated_fixtures_decode_without_framing_errors() {
    let files = fixtures();
    for (name, bytes) in &files {
        // Some fixtures end in an error of their own (MINIMAL row images, no metadata);
        // none may be a framing error.
        if let Err(e) = decode(name, bytes) {
            assert!(
                !e.reason.contains("truncated") && !e.reason.contains("event size"),
                "{name}: {e}"
            );
        }
    }
}

/// A QUERY_EVENT whose status-variables length runs past its body: the message names the
/// event type and says what is wrong in words (it was `Ok(QUERY_EVENT): can't parse: buf
/// doesn't have enough data`).
#[test]
fn an_unparsable_event_is_named_in_words() {
    let files = fixtures();
    let (name, original) = files
        .iter()
        .find(|(n, _)| n.starts_with("mariadb-10.11-compressed"))
        .unwrap();
    let mut bytes = original.clone();
    let (at, _) = frames(&bytes)
        .into_iter()
        .find(|(at, _)| bytes[at + 4] == 2)
        .expect("a QUERY_EVENT");
    // Post-header: thread id (4), exec time (4), db length (1), error code (2), status
    // variables length (2).
    bytes[at + 19 + 11..at + 19 + 13].copy_from_slice(&0xfff0u16.to_le_bytes());
    fix_checksums(&mut bytes);
    let e = decode(name, &bytes).unwrap_err().to_string();
    assert!(e.contains("the QUERY_EVENT event ("), "{e}");
    assert!(e.contains("ends before the fields it declares"), "{e}");
    assert!(!e.contains("Ok("), "{e}");
}

/// A WRITE_ROWS event whose columns-present bitmap names no column: its rows take no
/// bytes, so they cannot be told apart. It once made the decoder loop forever (found by
/// the mutation test below once partial row images were accepted); now it is an error.
#[test]
fn a_rows_event_whose_images_have_no_columns_is_an_error_not_a_loop() {
    let files = fixtures();
    let (name, original) = files
        .iter()
        .find(|(n, _)| n == "mysql-enum-string-set.000001")
        .unwrap();
    let mut bytes = original.clone();
    let (at, _) = frames(&bytes)
        .into_iter()
        .find(|(at, _)| bytes[at + 4] == 30)
        .expect("a WRITE_ROWS_EVENT (v2)");
    // Post-header: table id (6), flags (2), extra-data length (2, counting itself); then
    // the column count (one byte here) and the bitmap.
    let extra = u16::from_le_bytes([bytes[at + 19 + 8], bytes[at + 19 + 9]]) as usize;
    let count_at = at + 19 + 8 + extra;
    let n = bytes[count_at] as usize;
    assert!(n < 251, "{n}");
    for b in &mut bytes[count_at + 1..count_at + 1 + n.div_ceil(8)] {
        *b = 0;
    }
    fix_checksums(&mut bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    let (name2, bytes2) = (name.clone(), bytes.clone());
    std::thread::spawn(move || {
        let _ = tx.send(decode(&name2, &bytes2).map_err(|e| e.to_string()));
    });
    let outcome = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the decoder did not finish: it loops on rows that take no bytes");
    let e = outcome.unwrap_err();
    assert!(e.contains("images have no columns"), "{e}");
}

#[test]
fn mutated_binlog_files_never_panic() {
    let files = fixtures();
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let strategy = (
        any::<Index>(),
        prop::collection::vec(mutation(), 1..4),
        any::<bool>(),
    );
    proptest::test_runner::TestRunner::new(config)
        .run(&strategy, |(file, mutations, fix)| {
            let (name, original) = &files[file.index(files.len())];
            let mut bytes = original.clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            if fix {
                fix_checksums(&mut bytes);
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| decode(name, &bytes)));
            prop_assert!(outcome.is_ok(), "decoding {name} panicked");
            if let Ok(Err(e)) = outcome {
                prop_assert!(e.position.starts_with(name.as_str()), "{e}");
                // Written for people: no Rust debug formatting of results or options.
                let text = e.to_string();
                prop_assert!(
                    !["Ok(", "Err(", "Some("].iter().any(|d| text.contains(d)),
                    "{text}"
                );
            }
            Ok(())
        })
        .unwrap();
}
