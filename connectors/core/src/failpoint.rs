//! Named crash points between a durable effect and its record, for fault tests.
//!
//! Exactly-once in binlake rests on what a restart finds after a crash *between* two
//! writes: a table committed but not the run checkpoint, a Kafka transaction committed but
//! not yet acknowledged, a replica committed but not its change log. Each such gap has a
//! named failpoint ([`hit`]), and the fault tests (`tests/it/faults.rs`) crash the real
//! binary at every one in turn under a write workload and prove that nothing was lost or
//! duplicated.
//!
//! A failpoint is inert unless the environment variable `BINLAKE_FAILPOINTS` names it:
//! `name` or `name=N` (crash at the N-th hit, from 1), several separated by commas, e.g.
//! `BINLAKE_FAILPOINTS="run.after_table_commit=3"`; or `name=delay:MS`, which makes every
//! hit wait MS milliseconds instead (blocking the thread: it widens a race window, e.g.
//! a snapshot chunk's, so that a test meets it every time). A crash is `std::process::abort`: no
//! destructor runs, no buffer is flushed, nothing is committed or rolled back — as close
//! to `kill -9` at that instruction as a process can get. The line
//! `binlake failpoint <name> hit: crashing` goes to stderr first, so a test can tell that
//! the crash it asked for happened.
//!
//! Why hand-written rather than the `fail` crate: the tests need exactly one action
//! (crash the process at the N-th hit) in the release and debug binaries the tests run,
//! configured from the environment of a child process; the `fail` crate compiles its
//! points out unless a cargo feature is on, which would make the test binary differ from
//! the one users run (and rebuild binlake's crates between `make demo` and `make test`).
//! The cost when unset is one load of an initialized `OnceLock` per call; failpoints sit
//! at commit granularity (never per row).
//!
//! The failpoints, by where they are:
//!
//! | name | between |
//! | --- | --- |
//! | `lake.after_replica_commit` | a table's replica commit and its change-log commit |
//! | `run.after_table_commit` | one table's commits of a `run` batch and the next table's |
//! | `run.after_schema_history` | the schema-history file and the run checkpoint naming it |
//! | `run.before_checkpoint` | all tables' commits of a batch and the run checkpoint |
//! | `run.after_checkpoint` | the run checkpoint and the next batch |
//! | `run.after_part_staged` | a part of a large source transaction written (not committed) and the rest of it |
//! | `kafka.before_commit` | a capture batch produced (rows and position record) and its Kafka commit |
//! | `kafka.after_commit` | a Kafka transaction committed and the next batch |
//! | `materialize.before_table_commit` | a materialize batch consumed (its consumer positions taken) and a table's commits of it (delayed by the coverage test) |
//! | `materialize.after_table_commit` | one table's commits of a materialize batch and the next table's |
//! | `materialize.before_offsets` | a materialize batch's Delta commits and the consumer offset commit |
//! | `snapshot.after_chunk_read` | a snapshot chunk read from the primary and its emission |

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms failpoints.
pub const ENV: &str = "BINLAKE_FAILPOINTS";

struct Armed {
    /// name → (crash at this hit, hits so far).
    points: HashMap<String, (u64, AtomicU64)>,
    /// name → wait at every hit.
    delays: HashMap<String, std::time::Duration>,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| parse(&std::env::var(ENV).ok()?))
        .as_ref()
}

fn parse(spec: &str) -> Option<Armed> {
    let mut points = HashMap::new();
    let mut delays = HashMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some((name, ms)) = item.split_once("=delay:")
            && let Ok(ms) = ms.trim().parse::<u64>()
        {
            delays.insert(
                name.trim().to_string(),
                std::time::Duration::from_millis(ms),
            );
            continue;
        }
        let (name, at) = match item.split_once('=') {
            Some((n, a)) => (n.trim(), a.trim().parse::<u64>().unwrap_or(1).max(1)),
            None => (item, 1),
        };
        points.insert(name.to_string(), (at, AtomicU64::new(0)));
    }
    (!points.is_empty() || !delays.is_empty()).then_some(Armed { points, delays })
}

/// Passes the failpoint `name`: crashes the process when `BINLAKE_FAILPOINTS` arms it and
/// this is the hit it names. See the module docs.
#[inline]
pub fn hit(name: &str) {
    let Some(armed) = armed() else {
        return;
    };
    if let Some(d) = armed.delays.get(name) {
        std::thread::sleep(*d);
    }
    if let Some((at, hits)) = armed.points.get(name)
        && hits.fetch_add(1, Ordering::SeqCst) + 1 == *at
    {
        eprintln!("binlake failpoint {name} hit: crashing");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_names_and_hit_counts() {
        let a = parse("a.b=3, c ,d=0,e=x").expect("armed");
        let at = |n: &str| a.points.get(n).map(|p| p.0);
        assert_eq!(at("a.b"), Some(3));
        assert_eq!(at("c"), Some(1));
        assert_eq!(at("d"), Some(1));
        assert_eq!(at("e"), Some(1));
        assert!(parse(" , ").is_none());
        let d = parse("s.x=delay:250").expect("armed");
        assert_eq!(
            d.delays.get("s.x"),
            Some(&std::time::Duration::from_millis(250))
        );
        assert!(d.points.is_empty());
    }
}
