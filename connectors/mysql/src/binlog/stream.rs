//! The replication client: a binlog stream from the primary, decoded, resumable.
//!
//! # Starting
//!
//! binlake registers as a replica with its own `server_id` and asks for the binlog:
//! - from a file:pos (`COM_BINLOG_DUMP` with file name and position), any server;
//! - from a MariaDB GTID position: `SET @mariadb_slave_capability=4`,
//!   `SET @slave_connect_state='d-s-n,…'`, `SET @slave_gtid_strict_mode=1`, then a dump
//!   request without a file name: the server sends exactly the transactions after it;
//! - from a MySQL GTID set: `COM_BINLOG_DUMP_GTID` with the set (intervals on the wire
//!   end one past their last transaction, as MySQL writes them in its Previous_gtids
//!   events): the server sends every transaction not in the set;
//! - from the current end of the binlog: the server's GTID position (MariaDB), its
//!   `@@gtid_executed` (MySQL with `gtid_mode=ON`), or else file:pos.
//!
//! Tagged MySQL GTIDs (8.4) are not sent: a set with tags is refused with an error that
//! says to start from a file:pos (its wire format could not be checked against a server).
//! No MySQL server runs in the tests (Debian ships MariaDB only): the MySQL request is
//! checked byte for byte against a Previous_gtids event written by MySQL, not live.
//!
//! Every connection sets a heartbeat period, so an idle primary still proves the
//! connection alive, and asks for checksums (`@master_binlog_checksum`), which the
//! decoder verifies.
//!
//! # Resumption
//!
//! The reader remembers the resume position of the last commit it handed out and how many
//! items of the current (unfinished) transaction it has handed out. When the connection
//! is lost, it reconnects with exponential backoff from the last commit and drops the
//! replayed items it already handed out: the consumer sees every change once, with no gap
//! and no repeat, even when the connection died mid-transaction.
//!
//! # Transaction payloads (MySQL 8.0.20+)
//!
//! The decoder reads TRANSACTION_PAYLOAD events itself, streaming the zstd decompression
//! and failing loudly on a corrupt payload. mysql_async's stream also yields the payload's
//! inner events after it (decompressed whole in memory, and silently empty when zstd
//! fails); the reader skips those. Known limit: mysql_async still decompresses each payload
//! whole, so a huge compressed transaction costs its uncompressed size in memory.

use std::collections::VecDeque;
use std::time::Duration;

use binlake_core::{BinlogFilePos, Flavor, MysqlGtidSet, ResumePosition};
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};
use mysql_common::packets::{GnoInterval, Sid};

use super::decoder::{BinlogItem, Decoder, SchemaLookup};
use super::filter::Filter;
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::server::{ServerInfo, connect};

/// Where to start reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The current end of the binlog: only changes committed from now on.
    End,
    /// A recorded position.
    Position(ResumePosition),
}

/// A decoded, resumable binlog stream. See the module docs.
pub struct BinlogReader {
    cfg: SourceConfig,
    flavor: Flavor,
    heartbeat: Duration,
    stream: Option<BinlogStream>,
    decoder: Decoder,
    /// Where to resume: after the last commit handed out (or the start).
    resume: ResumePosition,
    /// Items handed out since the last commit (kept across reconnects).
    handed_in_txn: u64,
    /// Items to drop after a reconnect (already handed out before it).
    skip: u64,
    buffer: VecDeque<BinlogItem>,
    /// After a TRANSACTION_PAYLOAD: skip mysql_async's copies of its inner events.
    skipping_payload: bool,
    reconnects: u64,
    /// Whether the replication connection is up (for readiness probes).
    connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for BinlogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinlogReader")
            .field("source", &self.cfg.describe())
            .field("resume", &self.resume.to_string())
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl BinlogReader {
    /// Connects, checks the server, and opens the stream at `start`.
    pub async fn open(
        cfg: &SourceConfig,
        start: StartFrom,
        filter: Filter,
        lookup: Box<dyn SchemaLookup>,
    ) -> Result<BinlogReader> {
        let mut conn = connect(cfg).await?;
        let info = ServerInfo::probe(&mut conn, cfg).await?;
        let problems = info.capture_problems_for(&filter);
        if !problems.is_empty() {
            return Err(Error::Requirement {
                target: cfg.describe(),
                problems,
            });
        }
        if let Some(note) = info.row_image_note() {
            tracing::warn!(target = %cfg.describe(), "{note}");
        }
        let _ = conn.disconnect().await;
        let resume = match start {
            StartFrom::Position(p) => p,
            StartFrom::End => match (&info.flavor, &info.gtid_position, &info.binlog_position) {
                (Flavor::MariaDb, Some(p @ ResumePosition::MariaDbGtids(_)), _) => p.clone(),
                (Flavor::Mysql, Some(p @ ResumePosition::MysqlGtids(set)), _)
                    if dump_gtid_sids(set).is_ok() =>
                {
                    p.clone()
                }
                (_, _, Some(fp)) => ResumePosition::File(fp.clone()),
                _ => {
                    return Err(Error::Unexpected {
                        target: cfg.describe(),
                        reason: "the server reports no binlog position".into(),
                    });
                }
            },
        };
        let (file, gtids) = match &resume {
            ResumePosition::File(fp) => (fp.file.clone(), None),
            other => (String::new(), Some(other.clone())),
        };
        let decoder = Decoder::new(info.flavor, filter, lookup, &file, gtids);
        let mut reader = BinlogReader {
            cfg: cfg.clone(),
            flavor: info.flavor,
            heartbeat: Duration::from_secs(1),
            stream: None,
            decoder,
            resume,
            handed_in_txn: 0,
            skip: 0,
            buffer: VecDeque::new(),
            skipping_payload: false,
            reconnects: 0,
            connected: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        reader.connect_stream().await?;
        tracing::info!(source = %cfg.describe(), position = %reader.resume, "streaming binlog");
        Ok(reader)
    }

    /// The position after the last commit handed out.
    pub fn resume_position(&self) -> &ResumePosition {
        &self.resume
    }

    /// A flag that is true while the replication connection is up and false while the
    /// reader is reconnecting (it lives as long as anyone holds it).
    pub fn connection_state(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.connected.clone()
    }

    /// How often the connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Event types seen that binlake does not know, by type code, with counts.
    pub fn unknown_events(&self) -> &std::collections::BTreeMap<u8, u64> {
        self.decoder.unknown_events()
    }

    async fn connect_stream(&mut self) -> Result<()> {
        let target = self.cfg.describe();
        let mut conn = connect(&self.cfg).await?;
        let q = |query: String, e: mysql_async::Error| Error::Query {
            target: target.clone(),
            query,
            reason: e.to_string(),
        };
        let mut setup = vec![format!(
            "SET @master_heartbeat_period = {}",
            self.heartbeat.as_nanos()
        )];
        if self.flavor == Flavor::MariaDb {
            setup.push("SET @mariadb_slave_capability = 4".into());
        }
        if let ResumePosition::MariaDbGtids(pos) = &self.resume {
            setup.push(format!("SET @slave_connect_state = '{pos}'"));
            setup.push("SET @slave_gtid_strict_mode = 1".into());
            setup.push("SET @slave_gtid_ignore_duplicates = 0".into());
        }
        for s in setup {
            conn.query_drop(&s).await.map_err(|e| q(s.clone(), e))?;
        }
        let server_id = self.cfg.server_id;
        let stream = match &self.resume {
            ResumePosition::File(BinlogFilePos { file, pos }) => {
                let req = BinlogStreamRequest::new(server_id)
                    .with_filename(file.as_bytes())
                    .with_pos(*pos);
                conn.get_binlog_stream(req).await
            }
            ResumePosition::MariaDbGtids(_) => {
                conn.get_binlog_stream(BinlogStreamRequest::new(server_id))
                    .await
            }
            ResumePosition::MysqlGtids(set) => {
                let sids = dump_gtid_sids(set).map_err(|reason| Error::Unexpected {
                    target: target.clone(),
                    reason,
                })?;
                let req = BinlogStreamRequest::new(server_id)
                    .with_gtid()
                    .with_gtid_set(sids);
                conn.get_binlog_stream(req).await
            }
        }
        .map_err(|e| stream_error(&self.cfg, &self.resume, e))?;
        self.stream = Some(stream);
        self.connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The next item. Reconnects (with backoff) on transient errors; returns definite
    /// errors (purged position, corrupt event, missing grants).
    pub async fn next(&mut self) -> Result<BinlogItem> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Some(item) = self.take_buffered() {
                return Ok(item);
            }
            match self.read_event().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, position = %self.resume, retry_in = ?backoff, "binlog connection lost, reconnecting");
                    self.stream = None;
                    self.connected
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    self.restart().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The next item, then up to `max - 1` more that are decoded already (the rest of the
    /// rows of an event): handing items over in batches saves a wake-up per row.
    pub async fn next_many(&mut self, max: usize) -> Result<Vec<BinlogItem>> {
        let mut items = vec![self.next().await?];
        while items.len() < max {
            match self.take_buffered() {
                Some(item) => items.push(item),
                None => break,
            }
        }
        Ok(items)
    }

    /// An item decoded already, counted as handed out.
    fn take_buffered(&mut self) -> Option<BinlogItem> {
        let item = self.buffer.pop_front()?;
        match &item {
            BinlogItem::Commit(c) => {
                self.resume = c.resume();
                self.handed_in_txn = 0;
            }
            // Heartbeat positions depend on timing: not counted for the replay.
            BinlogItem::Position(_) => {}
            _ => self.handed_in_txn += 1,
        }
        Some(item)
    }

    /// Reconnects from the last commit; the items of the unfinished transaction that were
    /// already handed out are dropped when the server sends them again.
    async fn restart(&mut self) -> Result<()> {
        let (file, gtids) = match &self.resume {
            ResumePosition::File(fp) => (fp.file.clone(), None),
            other => (String::new(), Some(other.clone())),
        };
        self.decoder.reset(&file, gtids);
        // Everything handed out since the last commit comes again first; drop exactly that
        // many (a restart during a restart keeps the count right: only items handed out,
        // never items dropped, are counted).
        self.skip = self.handed_in_txn;
        self.buffer.clear();
        self.skipping_payload = false;
        match self.connect_stream().await {
            Ok(()) => {
                self.reconnects += 1;
                tracing::info!(position = %self.resume, "binlog stream reconnected");
                Ok(())
            }
            Err(e) if e.is_transient() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn read_event(&mut self) -> Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::Connect {
                target: self.cfg.describe(),
                reason: "not connected".into(),
            });
        };
        let idle_limit = self.heartbeat * 4;
        let event = match tokio::time::timeout(idle_limit, stream.next()).await {
            Err(_) => {
                return Err(Error::Connect {
                    target: self.cfg.describe(),
                    reason: format!("no event or heartbeat for {idle_limit:?}"),
                });
            }
            Ok(None) => {
                return Err(Error::Connect {
                    target: self.cfg.describe(),
                    reason: "the server closed the binlog stream".into(),
                });
            }
            Ok(Some(Err(e))) => return Err(stream_error(&self.cfg, &self.resume, e)),
            Ok(Some(Ok(ev))) => ev,
        };
        let h = event.header();
        if self.skipping_payload {
            if h.log_pos() == 0 {
                return Ok(());
            }
            self.skipping_payload = false;
        }
        if h.event_type_raw()
            == mysql_common::binlog::consts::EventType::TRANSACTION_PAYLOAD_EVENT as u8
        {
            self.skipping_payload = true;
        }
        let skip = &mut self.skip;
        let buffer = &mut self.buffer;
        self.decoder
            .feed(&event, &mut |item| {
                if *skip > 0 && !matches!(item, BinlogItem::Commit(_) | BinlogItem::Position(_)) {
                    *skip -= 1;
                } else {
                    buffer.push_back(item);
                }
                Ok(())
            })
            .map_err(|e| Error::Decode(e.to_string()))
    }
}

/// Classifies a stream error, turning the server's "position purged" into an actionable,
/// definite error.
/// The source ids of a MySQL GTID set as `COM_BINLOG_DUMP_GTID` carries them: intervals
/// end one past their last transaction. Tagged sets are refused (see the module docs).
fn dump_gtid_sids(set: &MysqlGtidSet) -> std::result::Result<Vec<Sid<'static>>, String> {
    let mut sids: Vec<(uuid::Uuid, Vec<GnoInterval>)> = Vec::new();
    for (uuid, tag, start, end) in set.iter_intervals() {
        if let Some(tag) = tag {
            return Err(format!(
                "resuming MySQL from a GTID set with tagged GTIDs (`{uuid}:{tag}`) is not supported; start from a binlog file:pos"
            ));
        }
        let interval = GnoInterval::new(start, end.saturating_add(1));
        match sids.last_mut() {
            Some((u, intervals)) if *u == uuid => intervals.push(interval),
            _ => sids.push((uuid, vec![interval])),
        }
    }
    Ok(sids
        .into_iter()
        .map(|(uuid, intervals)| Sid::new(*uuid.as_bytes()).with_intervals(intervals))
        .collect())
}

fn stream_error(cfg: &SourceConfig, resume: &ResumePosition, e: mysql_async::Error) -> Error {
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    if lower.contains("purged")
        || lower.contains("could not find first log file")
        || lower.contains("could not find gtid state")
    {
        return Error::PositionPurged {
            target: cfg.describe(),
            position: resume.to_string(),
            reason: msg,
        };
    }
    if lower.contains("same server_id")
        || lower.contains("same server_uuid")
        || lower.contains("same server id")
    {
        return Error::ServerIdInUse {
            target: cfg.describe(),
            server_id: cfg.server_id,
        };
    }
    let transient = matches!(e, mysql_async::Error::Io(_))
        || lower.contains("lost connection")
        || lower.contains("connection reset");
    if transient {
        Error::Connect {
            target: cfg.describe(),
            reason: msg,
        }
    } else {
        Error::Query {
            target: cfg.describe(),
            query: "binlog dump".into(),
            reason: msg,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use mysql_common::packets::ComBinlogDumpGtid;
    use mysql_common::proto::MySerialize;

    use super::*;

    /// The sid block of a `COM_BINLOG_DUMP_GTID` for `set`: the count, then each source id.
    fn sid_block(set: &str) -> Vec<u8> {
        let sids = dump_gtid_sids(&set.parse().unwrap()).unwrap();
        let mut buf = Vec::new();
        ComBinlogDumpGtid::new(7)
            .with_sids(sids)
            .serialize(&mut buf);
        // command (1), flags (2), server id (4), file name length (4, empty), position (8),
        // sid block length (4).
        let block = buf.split_off(23);
        assert_eq!(
            u32::from_le_bytes(buf[19..23].try_into().unwrap()) as usize,
            block.len()
        );
        block
    }

    #[test]
    fn gtid_sets_go_on_the_wire_with_exclusive_ends() {
        const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
        let block = sid_block(&format!("{U2}:9,{U1}:1-4:7-8"));
        let mut want = 2u64.to_le_bytes().to_vec();
        want.extend(uuid::Uuid::parse_str(U1).unwrap().as_bytes());
        for n in [2u64, 1, 5, 7, 9] {
            want.extend(n.to_le_bytes());
        }
        want.extend(uuid::Uuid::parse_str(U2).unwrap().as_bytes());
        for n in [1u64, 9, 10] {
            want.extend(n.to_le_bytes());
        }
        assert_eq!(block, want);
        assert_eq!(sid_block(""), 0u64.to_le_bytes());
        let tagged = format!("{U1}:1-3:tag_a:1").parse().unwrap();
        let err = dump_gtid_sids(&tagged).unwrap_err();
        assert!(err.contains("tagged") && err.contains("file:pos"), "{err}");
    }

    /// MySQL writes a GTID set in its Previous_gtids events exactly as the dump request
    /// carries it: the request for that set must be the same bytes.
    #[test]
    fn gtid_set_bytes_equal_those_mysql_writes() {
        let path = crate::fixture("transaction_compression.000001");
        let file = std::fs::read(&path).unwrap();
        let mut at = 4;
        let body = loop {
            let size = u32::from_le_bytes(file[at + 9..at + 13].try_into().unwrap()) as usize;
            if file[at + 4] == 35 {
                // Header (19 bytes) before, CRC32 (4 bytes) after.
                break &file[at + 19..at + size - 4];
            }
            at += size;
        };
        assert_eq!(
            sid_block("357df524-4139-11ee-9979-b033ee13919e:1"),
            body,
            "the fixture's Previous_gtids event holds 357df524-4139-11ee-9979-b033ee13919e:1"
        );
    }
}
