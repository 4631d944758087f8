//! Source positions: where in a primary's binlog an event or a resume point is.
//!
//! - [`BinlogFilePos`]: `mysql-bin.000042:1337`, valid on one server only.
//! - [`MysqlGtid`] / [`MysqlGtidSet`]: `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77` (with
//!   MySQL 8.3+ tags: `uuid:tag:1-5`). A set is what has been executed; resuming sends it.
//! - [`MariaDbGtid`] / [`MariaDbGtidPos`]: `0-1-100` (domain-server-sequence); a position is
//!   the last GTID per domain, and resuming sends it as `@slave_connect_state`.
//! - [`EventPosition`]: file, byte position and row index of one event: the total order of
//!   events within one source server.
//!
//! GTID sets and MariaDB positions are partially ordered (one may be neither before nor
//! after another); [`PartialOrd`] says so by returning `None`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use uuid::Uuid;

use crate::error::{Error, Result};

fn invalid(what: &'static str, input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidPosition {
        what,
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// A binlog file name and byte position in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BinlogFilePos {
    /// Binlog file name, e.g. `mysql-bin.000042`.
    pub file: String,
    /// Byte position within the file.
    pub pos: u64,
}

impl BinlogFilePos {
    /// A position from its parts.
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        BinlogFilePos {
            file: file.into(),
            pos,
        }
    }
}

impl fmt::Display for BinlogFilePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl FromStr for BinlogFilePos {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "binlog position (file:pos)";
        let (file, pos) = s
            .rsplit_once(':')
            .ok_or_else(|| invalid(WHAT, s, "expected FILE:POS"))?;
        if file.is_empty() {
            return Err(invalid(WHAT, s, "empty file name"));
        }
        let pos = pos
            .parse()
            .map_err(|_| invalid(WHAT, s, "position is not a whole number"))?;
        Ok(BinlogFilePos::new(file, pos))
    }
}

/// The numeric suffix of a binlog file name (`mysql-bin.000042` → 42), which orders files.
pub fn binlog_file_sequence(file: &str) -> Option<u64> {
    file.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
}

fn cmp_files(a: &str, b: &str) -> Ordering {
    match (binlog_file_sequence(a), binlog_file_sequence(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        _ => a.cmp(b),
    }
}

/// The position of one row event: binlog file, byte position of the event, and the index
/// of the row within it (a rows event holds many rows). Ordered by file sequence number,
/// position, row: the order the server wrote them in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventPosition {
    /// Binlog file name.
    pub file: Arc<str>,
    /// Byte position of the event in the file.
    pub pos: u64,
    /// Index of the row within the event, from 0.
    pub row: u32,
}

impl Ord for EventPosition {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_files(&self.file, &other.file)
            .then(self.pos.cmp(&other.pos))
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for EventPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for EventPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}#{}", self.file, self.pos, self.row)
    }
}

/// A MySQL GTID: source UUID, optional tag (MySQL 8.3+), transaction number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MysqlGtid {
    /// Source server UUID.
    pub uuid: Uuid,
    /// Tag (MySQL 8.3+), lower case.
    pub tag: Option<String>,
    /// Transaction number, from 1.
    pub txn: u64,
}

impl fmt::Display for MysqlGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            Some(tag) => write!(f, "{}:{}:{}", self.uuid, tag, self.txn),
            None => write!(f, "{}:{}", self.uuid, self.txn),
        }
    }
}

impl FromStr for MysqlGtid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "MySQL GTID";
        let set: MysqlGtidSet = s.parse()?;
        let mut it = set.iter_intervals();
        match (it.next(), it.next()) {
            (Some((uuid, tag, start, end)), None) if start == end => Ok(MysqlGtid {
                uuid,
                tag: tag.map(str::to_string),
                txn: start,
            }),
            _ => Err(invalid(WHAT, s, "expected UUID[:TAG]:N")),
        }
    }
}

/// A MariaDB GTID: replication domain, originating server, sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MariaDbGtid {
    /// Replication domain id.
    pub domain: u32,
    /// Server id of the server that wrote the transaction.
    pub server: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl fmt::Display for MariaDbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl FromStr for MariaDbGtid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "MariaDB GTID";
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [domain, server, seq] = parts[..] else {
            return Err(invalid(WHAT, s, "expected DOMAIN-SERVER-SEQUENCE"));
        };
        let bad = |name: &str| invalid(WHAT, s, format!("{name} is not a valid number"));
        Ok(MariaDbGtid {
            domain: domain.parse().map_err(|_| bad("domain (u32)"))?,
            server: server.parse().map_err(|_| bad("server id (u32)"))?,
            seq: seq.parse().map_err(|_| bad("sequence (u64)"))?,
        })
    }
}

/// The GTID of a transaction, in either server family's form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Gtid {
    /// MySQL `uuid[:tag]:n`.
    Mysql(MysqlGtid),
    /// MariaDB `domain-server-seq`.
    MariaDb(MariaDbGtid),
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::Mysql(g) => g.fmt(f),
            Gtid::MariaDb(g) => g.fmt(f),
        }
    }
}

impl FromStr for Gtid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.contains(':') {
            s.parse().map(Gtid::Mysql)
        } else {
            s.parse().map(Gtid::MariaDb)
        }
    }
}

/// A source id in a GTID set: server UUID and tag.
type Sid = (Uuid, Option<String>);

/// A MySQL GTID set: per source UUID (and tag), the executed transaction numbers as
/// inclusive, sorted, non-adjacent intervals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MysqlGtidSet {
    sids: BTreeMap<Sid, Vec<(u64, u64)>>,
}

impl MysqlGtidSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no GTID is in the set.
    pub fn is_empty(&self) -> bool {
        self.sids.is_empty()
    }

    /// Adds the interval `start..=end` of `uuid[:tag]`.
    pub fn add_interval(&mut self, uuid: Uuid, tag: Option<&str>, start: u64, end: u64) {
        let (start, end) = (start.min(end), start.max(end));
        let ivs = self
            .sids
            .entry((uuid, tag.map(str::to_ascii_lowercase)))
            .or_default();
        ivs.push((start, end));
        ivs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ivs.len());
        for &(s, e) in ivs.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *ivs = merged;
    }

    /// Adds one GTID.
    pub fn add(&mut self, gtid: &MysqlGtid) {
        self.add_interval(gtid.uuid, gtid.tag.as_deref(), gtid.txn, gtid.txn);
    }

    /// True when `gtid` is in the set.
    pub fn contains(&self, gtid: &MysqlGtid) -> bool {
        self.sids
            .get(&(gtid.uuid, gtid.tag.clone()))
            .is_some_and(|ivs| ivs.iter().any(|&(s, e)| s <= gtid.txn && gtid.txn <= e))
    }

    /// True when every GTID of `self` is in `other`.
    pub fn is_subset(&self, other: &MysqlGtidSet) -> bool {
        self.sids.iter().all(|(sid, ivs)| {
            let Some(theirs) = other.sids.get(sid) else {
                return false;
            };
            ivs.iter()
                .all(|&(s, e)| theirs.iter().any(|&(ts, te)| ts <= s && e <= te))
        })
    }

    /// Every interval as (uuid, tag, start, end).
    pub fn iter_intervals(&self) -> impl Iterator<Item = (Uuid, Option<&str>, u64, u64)> + '_ {
        self.sids.iter().flat_map(|((uuid, tag), ivs)| {
            ivs.iter().map(move |&(s, e)| (*uuid, tag.as_deref(), s, e))
        })
    }
}

impl PartialOrd for MysqlGtidSet {
    /// Ordered by inclusion: `a < b` when `a` is a proper subset of `b`.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.is_subset(other), other.is_subset(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last_uuid: Option<Uuid> = None;
        for ((uuid, tag), ivs) in &self.sids {
            if last_uuid != Some(*uuid) {
                if last_uuid.is_some() {
                    f.write_str(",")?;
                }
                write!(f, "{uuid}")?;
                last_uuid = Some(*uuid);
            }
            if let Some(tag) = tag {
                write!(f, ":{tag}")?;
            }
            for &(s, e) in ivs {
                if s == e {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{e}")?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "MySQL GTID set";
        let mut set = MysqlGtidSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut segs = part.split(':');
            let uuid_text = segs.next().unwrap_or_default();
            let uuid = Uuid::parse_str(uuid_text)
                .map_err(|_| invalid(WHAT, s, format!("`{uuid_text}` is not a UUID")))?;
            let mut tag: Option<&str> = None;
            let mut any = false;
            for seg in segs {
                let seg = seg.trim();
                let first = seg.bytes().next();
                if first.is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') {
                    if seg.len() > 32
                        || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(invalid(WHAT, s, format!("`{seg}` is not a valid tag")));
                    }
                    tag = Some(seg);
                    continue;
                }
                let (a, b) = seg.split_once('-').unwrap_or((seg, seg));
                let num = |x: &str| {
                    x.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid(WHAT, s, format!("`{seg}` is not an interval")))
                };
                let (start, end) = (num(a)?, num(b)?);
                if end < start {
                    return Err(invalid(
                        WHAT,
                        s,
                        format!("interval `{seg}` ends before it starts"),
                    ));
                }
                set.add_interval(uuid, tag, start, end);
                any = true;
            }
            if !any {
                return Err(invalid(WHAT, s, format!("`{part}` has no interval")));
            }
        }
        Ok(set)
    }
}

/// A MariaDB GTID position: the last applied GTID of each replication domain, as
/// `@@gtid_binlog_pos` and `@slave_connect_state` write it (`0-1-100,1-2-7`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MariaDbGtidPos {
    domains: BTreeMap<u32, MariaDbGtid>,
}

impl MariaDbGtidPos {
    /// The empty position (start of every domain).
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no domain has a GTID.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Records `gtid` as the last GTID of its domain.
    pub fn advance(&mut self, gtid: MariaDbGtid) {
        self.domains.insert(gtid.domain, gtid);
    }

    /// True when `gtid` is at or before this position in its domain (already applied).
    pub fn contains(&self, gtid: &MariaDbGtid) -> bool {
        self.domains
            .get(&gtid.domain)
            .is_some_and(|last| gtid.seq <= last.seq)
    }

    /// The last GTID of each domain, by domain id.
    pub fn gtids(&self) -> impl Iterator<Item = &MariaDbGtid> {
        self.domains.values()
    }
}

impl PartialOrd for MariaDbGtidPos {
    /// Domain by domain: `a <= b` when every domain of `a` is at or before `b`'s.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let le = |a: &Self, b: &Self| a.gtids().all(|g| b.contains(g));
        match (le(self, other), le(other, self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
}

impl fmt::Display for MariaDbGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            g.fmt(f)?;
        }
        Ok(())
    }
}

impl FromStr for MariaDbGtidPos {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut pos = MariaDbGtidPos::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: MariaDbGtid = part.parse()?;
            if pos.domains.contains_key(&g.domain) {
                return Err(invalid(
                    "MariaDB GTID position",
                    s,
                    format!("domain {} appears twice", g.domain),
                ));
            }
            pos.advance(g);
        }
        Ok(pos)
    }
}

/// Where to (re)start reading a binlog.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResumePosition {
    /// After every transaction of a MySQL GTID set.
    MysqlGtids(MysqlGtidSet),
    /// After the given GTID of each MariaDB domain.
    MariaDbGtids(MariaDbGtidPos),
    /// At a binlog file and byte position.
    File(BinlogFilePos),
}

impl fmt::Display for ResumePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumePosition::MysqlGtids(s) => write!(f, "gtid:{s}"),
            ResumePosition::MariaDbGtids(p) => write!(f, "mariadb-gtid:{p}"),
            ResumePosition::File(p) => write!(f, "file:{p}"),
        }
    }
}

impl FromStr for ResumePosition {
    type Err = Error;
    /// Parses what `Display` writes: `gtid:<MySQL GTID set>`, `mariadb-gtid:<d-s-n,…>` or
    /// `file:<name>:<pos>`.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("gtid:") {
            rest.parse().map(ResumePosition::MysqlGtids)
        } else if let Some(rest) = s.strip_prefix("mariadb-gtid:") {
            rest.parse().map(ResumePosition::MariaDbGtids)
        } else if let Some(rest) = s.strip_prefix("file:") {
            rest.parse().map(ResumePosition::File)
        } else {
            Err(invalid(
                "resume position",
                s,
                "expected gtid:<set>, mariadb-gtid:<d-s-n,...> or file:<name>:<pos>",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mysql_gtid_set_parse_print_merge() {
        let s: MysqlGtidSet = format!("{U2}:5-9, {}:1-3:4:7-8:tag_a:1-2", U1.to_uppercase())
            .parse()
            .expect("valid");
        assert_eq!(s.to_string(), format!("{U1}:1-4:7-8:tag_a:1-2,{U2}:5-9"));
        let g: MysqlGtid = format!("{U1}:8").parse().expect("valid");
        assert!(s.contains(&g));
        assert!(!s.contains(&MysqlGtid {
            txn: 5,
            ..g.clone()
        }));
        let mut t = s.clone();
        t.add(&MysqlGtid { txn: 5, ..g });
        assert!(s < t);
        assert_eq!(t.partial_cmp(&s), Some(Ordering::Greater));
        let other: MysqlGtidSet = format!("{U1}:100").parse().expect("valid");
        assert_eq!(s.partial_cmp(&other), None);
        for bad in ["x:1", U1, &format!("{U1}:0"), &format!("{U1}:5-3")] {
            assert!(bad.parse::<MysqlGtidSet>().is_err(), "{bad}");
        }
        assert!("".parse::<MysqlGtidSet>().expect("empty ok").is_empty());
    }

    #[test]
    fn mariadb_positions() {
        let p: MariaDbGtidPos = "1-2-7, 0-1-100".parse().expect("valid");
        assert_eq!(p.to_string(), "0-1-100,1-2-7");
        assert!(p.contains(&"0-5-99".parse().expect("valid")));
        assert!(!p.contains(&"0-1-101".parse().expect("valid")));
        assert!(!p.contains(&"2-1-1".parse().expect("valid")));
        let q: MariaDbGtidPos = "0-1-101,1-2-7".parse().expect("valid");
        assert!(p < q);
        let r: MariaDbGtidPos = "0-1-99,1-2-8".parse().expect("valid");
        assert_eq!(p.partial_cmp(&r), None);
        for bad in ["0-1", "a-1-2", "0-1-2,0-1-3", "0-99999999999-1"] {
            assert!(bad.parse::<MariaDbGtidPos>().is_err(), "{bad}");
        }
    }

    #[test]
    fn event_positions_are_totally_ordered_across_files() {
        let p = |f: &str, pos, row| EventPosition {
            file: f.into(),
            pos,
            row,
        };
        let mut v = [
            p("bin.000010", 4, 0),
            p("bin.000009", 900, 1),
            p("bin.000009", 900, 0),
            p("bin.000009", 120, 5),
        ];
        v.sort();
        assert_eq!(
            v.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "bin.000009:120#5",
                "bin.000009:900#0",
                "bin.000009:900#1",
                "bin.000010:4#0"
            ]
        );
    }

    #[test]
    fn resume_positions_round_trip() {
        for s in [
            format!("gtid:{U1}:1-10"),
            "mariadb-gtid:0-1-5".to_string(),
            "file:mysql-bin.000003:1234".to_string(),
        ] {
            let p: ResumePosition = s.parse().expect("valid");
            assert_eq!(p.to_string(), s);
        }
        assert!("bin.000003:12".parse::<ResumePosition>().is_err());
    }
}
