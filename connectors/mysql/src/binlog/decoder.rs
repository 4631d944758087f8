//! The binlog decoder: a sans-I/O state machine from binlog events to [`BinlogItem`]s.
//!
//! It is fed events in binlog order, from the replication stream or from files, and calls
//! back with items: transaction starts, row changes, schema changes and commits. It keeps
//! no rows: a transaction of ten million rows flows through one rows event at a time.
//!
//! # Transactions and positions
//!
//! A transaction starts at a GTID event (MySQL's GTID / anonymous GTID, MariaDB's GTID
//! event) or at `BEGIN`, and ends at XID, `COMMIT`, or, for a DDL statement (MariaDB's
//! standalone GTID, MySQL's GTID + DDL without BEGIN), right after the statement. Only
//! [`BinlogItem::Commit`] carries a resume position, so whoever records positions records
//! transaction boundaries and a restart never begins inside a transaction. The resume
//! position is both the binlog file:pos after the commit and, when the server uses GTIDs,
//! the GTID state including this transaction.
//!
//! # Statements instead of rows
//!
//! A session with `binlog_format=STATEMENT` writes its INSERT/UPDATE/DELETE as QUERY
//! events. One that writes a captured table stops the stream with a definite error;
//! an unconditional `DELETE FROM t` becomes a truncate. The policy, and what passes, is in
//! [`super::statement`].
//!
//! # Error handling
//!
//! Anything binlake cannot decode exactly is an error naming the table, the binlog position
//! and the reason; nothing is skipped silently. Event types binlake does not know are
//! logged once per type and counted ([`Decoder::unknown_events`]); they carry no row data
//! in any server version binlake supports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use binlake_core::{
    BinlogFilePos, ChangeEvent, EventPosition, Flavor, Gtid, MariaDbGtid, MariaDbGtidPos,
    MysqlGtid, MysqlGtidSet, Op, ResumePosition, Row, SchemaChange, SnapshotMarker, SourceInfo,
    TableChange, TableChangeKind, TableSchema, TransactionInfo, Value,
};
use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};

use super::filter::Filter;
use super::json;
use super::mariadb;
use super::rows::{Cursor, RowError};
use super::table::{TableDef, table_def};

/// What the decoder produces.
#[derive(Debug, Clone, PartialEq)]
pub enum BinlogItem {
    /// A transaction begins.
    Begin(TxnStart),
    /// One row changed (or a table was truncated).
    Change(ChangeEvent),
    /// A statement changed a schema (CREATE/ALTER/DROP/RENAME/TRUNCATE …).
    SchemaChange(SchemaChange),
    /// A statement outside the captured databases changed the schema history (JSON, to
    /// keep with the position after it): no schema change of a captured table, but a
    /// table may later be renamed into scope.
    SchemaHistory(Arc<str>),
    /// The current transaction is complete; resuming at `resume` continues after it.
    Commit(Commit),
    /// The stream has reached this binlog position outside any transaction (a rotation or
    /// a heartbeat of an idle primary). Not a resume point by itself; heartbeats depend on
    /// timing, so these items are not replayed identically after a reconnect.
    Position(BinlogFilePos),
}

/// The start of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnStart {
    /// Transaction id: the GTID, or `file:pos` of its first event.
    pub id: Arc<str>,
    /// The GTID, when the server uses them.
    pub gtid: Option<Gtid>,
    /// Commit time on the source, µs since the epoch.
    pub ts_us: i64,
}

/// The end of a transaction, and where to resume after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// Transaction id (as in [`TxnStart`]).
    pub id: Arc<str>,
    /// The GTID, when the server uses them.
    pub gtid: Option<Gtid>,
    /// Commit time on the source, µs since the epoch.
    pub ts_us: i64,
    /// The binlog file and position right after the transaction.
    pub file_pos: BinlogFilePos,
    /// The GTID state including this transaction, when GTIDs are on.
    pub gtid_state: Option<ResumePosition>,
    /// Number of row changes the transaction produced (after filtering).
    pub events: u64,
}

impl Commit {
    /// The position to resume after this transaction: the GTID state when there is one
    /// (it survives binlog rotation and failover), else file:pos.
    pub fn resume(&self) -> ResumePosition {
        self.gtid_state
            .clone()
            .unwrap_or_else(|| ResumePosition::File(self.file_pos.clone()))
    }
}

/// A decoding failure: definite (the same bytes fail again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode binlog event at {position}{table}: {reason}")]
pub struct DecodeError {
    /// `file:pos` of the event.
    pub position: String,
    /// ` (table db.t)`, when the event belongs to a table.
    pub table: String,
    /// What is wrong.
    pub reason: String,
}

/// Looks up a table's current schema when the binlog does not carry it
/// (`binlog_row_metadata` not FULL).
pub trait SchemaLookup: Send {
    /// The schema of `db.table`, if known.
    fn lookup(&mut self, database: &str, table: &str) -> Option<TableSchema>;

    /// Called with every schema-changing statement, in binlog order, so that a lookup that
    /// keeps a history stays current. `default_db` is the statement's default database.
    /// Returns the tables the statement created, altered or dropped (empty without a
    /// history).
    fn apply_ddl(&mut self, default_db: &str, ddl: &str) -> Vec<TableChange> {
        let _ = (default_db, ddl);
        Vec::new()
    }

    /// The whole state as JSON, for persistence (`None`: nothing worth keeping).
    fn snapshot(&self) -> Option<String> {
        None
    }
}

/// No fallback: tables must come with full table-map metadata.
#[derive(Debug, Default)]
pub struct NoLookup;

impl SchemaLookup for NoLookup {
    fn lookup(&mut self, _: &str, _: &str) -> Option<TableSchema> {
        None
    }
}

#[derive(Debug)]
enum Mapped {
    /// Filtered out: rows of this table are not decoded.
    Skipped,
    Table {
        def: Arc<TableDef>,
        /// The table-map event body it was built from, to reuse it when unchanged.
        raw: Vec<u8>,
    },
}

#[derive(Debug)]
struct Txn {
    id: Arc<str>,
    gtid: Option<Gtid>,
    ts_us: i64,
    /// Ends after the next statement (DDL or a standalone event group).
    standalone: bool,
    total_order: u64,
    per_table: HashMap<u64, u64>,
    thread: Option<u32>,
    /// The statement of the rows that follow (shared by all their events).
    query: Option<Arc<str>>,
    events: u64,
}

/// The decoder. See the module docs.
pub struct Decoder {
    flavor: Flavor,
    filter: Filter,
    lookup: Box<dyn SchemaLookup>,
    file: Arc<str>,
    /// Position of the end of the last event seen.
    next_pos: u64,
    fde: Option<mysql_common::binlog::events::FormatDescriptionEvent<'static>>,
    tables: HashMap<u64, Mapped>,
    /// The last schema seen per `(db, table)`, for TRUNCATE (which has no table map).
    by_name: HashMap<(String, String), Arc<TableSchema>>,
    txn: Option<Txn>,
    /// A MySQL GTID seen, waiting for the BEGIN or DDL it belongs to.
    pending_gtid: Option<(Gtid, i64)>,
    gtid_state: Option<ResumePosition>,
    /// Whether a transaction was committed since the start (or the last reset).
    committed: bool,
    unknown: BTreeMap<u8, u64>,
    verify_checksums: bool,
    /// `server_id` in the header of the event being fed.
    server_id: u32,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("flavor", &self.flavor)
            .field("file", &self.file)
            .field("next_pos", &self.next_pos)
            .field("tables", &self.tables.len())
            .finish_non_exhaustive()
    }
}

type Sink<'a> = dyn FnMut(BinlogItem) -> Result<(), DecodeError> + 'a;

impl Decoder {
    /// A decoder for a server of `flavor`, starting in binlog `file`; `gtid_state` is the
    /// GTID state at the start (it grows with every commit), `None` without GTIDs.
    pub fn new(
        flavor: Flavor,
        filter: Filter,
        lookup: Box<dyn SchemaLookup>,
        file: &str,
        gtid_state: Option<ResumePosition>,
    ) -> Self {
        Decoder {
            flavor,
            filter,
            lookup,
            file: file.into(),
            next_pos: 4,
            fde: None,
            tables: HashMap::new(),
            by_name: HashMap::new(),
            txn: None,
            pending_gtid: None,
            gtid_state,
            committed: false,
            unknown: BTreeMap::new(),
            verify_checksums: true,
            server_id: 0,
        }
    }

    /// Forgets the stream state (tables, open transaction) to start again in `file` with
    /// `gtid_state`, as after a reconnect; filters, lookup and counters stay.
    ///
    /// A reset decoder is in the state of a new one (only the schema cache and the counts
    /// of unknown events are kept): the new stream starts with a fake ROTATE sent before
    /// its FORMAT_DESCRIPTION, whose name must be read without the previous stream's
    /// checksum settings (else the checksum becomes part of the file name).
    pub fn reset(&mut self, file: &str, gtid_state: Option<ResumePosition>) {
        self.file = file.into();
        self.next_pos = 4;
        self.fde = None;
        self.tables.clear();
        self.txn = None;
        self.pending_gtid = None;
        self.gtid_state = gtid_state;
        self.committed = false;
    }

    /// Counts of event types that binlake does not know, by type code.
    pub fn unknown_events(&self) -> &BTreeMap<u8, u64> {
        &self.unknown
    }

    /// The binlog file the decoder is in.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// True while inside a transaction.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    fn err(&self, pos: u64, table: Option<&str>, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            position: format!("{}:{}", self.file, pos),
            table: table.map(|t| format!(" (table {t})")).unwrap_or_default(),
            reason: reason.into(),
        }
    }

    /// Feeds one event; items go to `sink` in order.
    pub fn feed(&mut self, event: &Event, sink: &mut Sink<'_>) -> Result<(), DecodeError> {
        let h = event.header();
        let size = u64::from(h.event_size());
        let log_pos = u64::from(h.log_pos());
        // Events inside a transaction payload have no position of their own.
        let start = if log_pos >= size {
            log_pos - size
        } else {
            self.next_pos
        };
        let ty = h.event_type_raw();
        self.server_id = h.server_id();

        if self.verify_checksums
            && let (Some(sum), Some(alg)) = (
                event.checksum(),
                event.footer().get_checksum_alg().ok().flatten(),
            )
            && ty != EventType::FORMAT_DESCRIPTION_EVENT as u8
            && u32::from_le_bytes(sum) != event.calc_checksum(alg)
        {
            return Err(self.err(start, None, "checksum mismatch: the event is corrupt"));
        }

        if (mariadb::QUERY_COMPRESSED_EVENT..=mariadb::DELETE_ROWS_COMPRESSED_EVENT).contains(&ty) {
            let plain = mariadb::decompress_event(event)
                .map_err(|e| self.err(start, None, format!("compressed event: {e}")))?;
            return self.feed(&plain, sink);
        }

        let result = match ty {
            mariadb::GTID_EVENT => {
                let g = mariadb::parse_gtid(event.data())
                    .map_err(|e| self.err(start, None, format!("MariaDB GTID event: {e}")))?;
                let gtid = MariaDbGtid {
                    domain: g.domain_id,
                    server: h.server_id(),
                    seq: g.seq_no,
                };
                self.begin(
                    Some(Gtid::MariaDb(gtid)),
                    start,
                    ts(h.timestamp()),
                    g.is_standalone(),
                    sink,
                )
            }
            mariadb::ANNOTATE_ROWS_EVENT => {
                if let Some(t) = self.txn.as_mut() {
                    t.query = Some(mariadb::parse_annotate_rows(event.data()).into());
                }
                Ok(())
            }
            mariadb::GTID_LIST_EVENT
            | mariadb::BINLOG_CHECKPOINT_EVENT
            | mariadb::START_ENCRYPTION_EVENT => {
                if ty == mariadb::START_ENCRYPTION_EVENT {
                    return Err(self.err(start, None, "the binlog is encrypted (encrypt_binlog=ON); binlake reads it through the replication protocol, where the server decrypts it"));
                }
                Ok(())
            }
            _ => self.feed_known(event, start, sink),
        };
        if log_pos > 0 {
            self.next_pos = log_pos;
        }
        result
    }

    fn feed_known(
        &mut self,
        event: &Event,
        start: u64,
        sink: &mut Sink<'_>,
    ) -> Result<(), DecodeError> {
        let h = event.header();
        super::guard::check(h.event_type_raw(), event.data())
            .map_err(|e| self.err(start, None, e))?;
        let data = match event.read_data() {
            Ok(Some(d)) => d,
            Ok(None) => {
                let ty = h.event_type_raw();
                let n = self.unknown.entry(ty).or_default();
                if *n == 0 {
                    tracing::warn!(event_type = ty, position = %format!("{}:{start}", self.file), "unknown binlog event type, skipped (it carries no row data)");
                }
                *n += 1;
                return Ok(());
            }
            Err(e) => {
                return Err(self.err(
                    start,
                    None,
                    unparsable(h.event_type_raw(), event.data().len(), &e),
                ));
            }
        };
        match data {
            EventData::FormatDescriptionEvent(fde) => {
                self.fde = Some(fde.into_owned());
                // A new binlog (or a restarted server): table ids start over.
                self.tables.clear();
            }
            EventData::RotateEvent(r) => {
                let name = r.name_raw();
                let name = if self.fde.is_none() {
                    strip_checksum(event, name)
                } else {
                    name
                };
                self.file = String::from_utf8_lossy(name).as_ref().into();
                self.next_pos = r.position();
                if self.txn.is_none() {
                    sink(BinlogItem::Position(BinlogFilePos::new(
                        self.file.to_string(),
                        r.position(),
                    )))?;
                }
                return Ok(());
            }
            EventData::GtidEvent(g) => {
                let uuid = uuid::Uuid::from_bytes(g.sid());
                let gtid = MysqlGtid {
                    uuid,
                    tag: g.tag().map(|t| t.to_string().to_ascii_lowercase()),
                    txn: g.gno(),
                };
                let commit_us = g.original_commit_timestamp();
                let ts_us = if commit_us > 0 {
                    commit_us as i64
                } else {
                    ts(h.timestamp())
                };
                self.pending_gtid = Some((Gtid::Mysql(gtid), ts_us));
            }
            EventData::AnonymousGtidEvent(_) => self.pending_gtid = None,
            EventData::QueryEvent(q) => {
                let sql = q.query();
                let word = first_word(&sql);
                if word.eq_ignore_ascii_case("BEGIN") {
                    let (gtid, ts_us) = match self.pending_gtid.take() {
                        Some((g, t)) => (Some(g), t),
                        None => (None, ts(h.timestamp())),
                    };
                    if self.txn.is_none() {
                        self.begin(gtid, start, ts_us, false, sink)?;
                    }
                    if let Some(t) = self.txn.as_mut() {
                        t.standalone = false;
                        t.thread = Some(q.thread_id());
                    }
                } else if word.eq_ignore_ascii_case("COMMIT") {
                    self.commit(event, sink)?;
                } else if word.eq_ignore_ascii_case("ROLLBACK") {
                    // Only non-transactional changes are ever logged before a ROLLBACK;
                    // they happened, so they stay. The transaction still ends here.
                    self.commit(event, sink)?;
                } else {
                    if self.txn.is_none() {
                        let (gtid, ts_us) = match self.pending_gtid.take() {
                            Some((g, t)) => (Some(g), t),
                            None => (None, ts(h.timestamp())),
                        };
                        self.begin(gtid, start, ts_us, true, sink)?;
                    }
                    let db = q.schema().into_owned();
                    let sql = sql.into_owned();
                    self.statement(&db, sql, start, q.thread_id(), sink)?;
                    if self.txn.as_ref().is_some_and(|t| t.standalone) {
                        self.commit(event, sink)?;
                    }
                }
            }
            // LOAD DATA logged as a statement (the file's rows travel in BEGIN_LOAD_QUERY
            // and APPEND_BLOCK events, which carry nothing binlake can apply).
            EventData::ExecuteLoadQueryEvent(q) => {
                let sql = q.query();
                let db = q.schema().into_owned();
                let thread = q.thread_id();
                let sql = sql.into_owned();
                self.statement(&db, sql, start, thread, sink)?;
            }
            EventData::XidEvent(_) => self.commit(event, sink)?,
            EventData::RowsQueryEvent(q) => {
                if let Some(t) = self.txn.as_mut() {
                    t.query = Some(q.query().as_ref().into());
                }
            }
            EventData::TableMapEvent(tme) => self.table_map(&tme, event.data(), start)?,
            EventData::RowsEvent(rows) => self.rows(&rows, start, sink)?,
            EventData::TransactionPayloadEvent(p) => {
                let reader = p
                    .decompressed()
                    .map_err(|e| self.err(start, None, format!("transaction payload: {e}")))?;
                self.payload(reader, start, sink)?;
            }
            EventData::HeartbeatEvent => {
                if self.txn.is_none() && h.log_pos() > 0 {
                    sink(BinlogItem::Position(BinlogFilePos::new(
                        self.file.to_string(),
                        u64::from(h.log_pos()),
                    )))?;
                }
            }
            // At the start of each file: every GTID before it. Taken as the state only when
            // reading starts at a file's beginning (offline, or a file:pos of 4); later
            // files' events add nothing to a state kept since.
            EventData::PreviousGtidsEvent(e) => {
                if self.gtid_state.is_none() && !self.committed {
                    let mut set = MysqlGtidSet::new();
                    for sid in e.sids() {
                        let uuid = uuid::Uuid::from_bytes(sid.uuid());
                        let tag = sid.tag().map(|t| t.to_string());
                        for iv in sid.intervals().iter().filter(|iv| iv.end() > iv.start()) {
                            set.add_interval(uuid, tag.as_deref(), iv.start(), iv.end() - 1);
                        }
                    }
                    self.gtid_state = Some(ResumePosition::MysqlGtids(set));
                }
            }
            EventData::StopEvent
            | EventData::IntvarEvent(_)
            | EventData::RandEvent(_)
            | EventData::UserVarEvent(_)
            | EventData::IgnorableEvent(_)
            | EventData::IncidentEvent(_) => {}
            other => {
                let ty = h.event_type_raw();
                let n = self.unknown.entry(ty).or_default();
                if *n == 0 {
                    tracing::warn!(event_type = ty, kind = ?std::mem::discriminant(&other), "binlog event type not used by binlake, skipped");
                }
                *n += 1;
            }
        }
        Ok(())
    }

    /// The events inside a MySQL 8 TRANSACTION_PAYLOAD, read one at a time from the
    /// decompressing reader: memory is bounded by the largest inner event, not the payload.
    fn payload(
        &mut self,
        mut reader: impl std::io::BufRead,
        start: u64,
        sink: &mut Sink<'_>,
    ) -> Result<(), DecodeError> {
        let mut inner = super::file::EventFramer::new(true);
        loop {
            match inner.next(&mut reader, None) {
                Ok(Some(ev)) => {
                    let saved = self.verify_checksums;
                    self.verify_checksums = false;
                    let r = self.feed(&ev, sink);
                    self.verify_checksums = saved;
                    r?;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(self.err(
                        start,
                        None,
                        format!("corrupt TRANSACTION_PAYLOAD (zstd or inner event): {e}"),
                    ));
                }
            }
        }
    }

    fn begin(
        &mut self,
        gtid: Option<Gtid>,
        start: u64,
        ts_us: i64,
        standalone: bool,
        sink: &mut Sink<'_>,
    ) -> Result<(), DecodeError> {
        let id: Arc<str> = match &gtid {
            Some(g) => g.to_string().into(),
            None => format!("{}:{start}", self.file).into(),
        };
        self.txn = Some(Txn {
            id: id.clone(),
            gtid: gtid.clone(),
            ts_us,
            standalone,
            total_order: 0,
            per_table: HashMap::new(),
            thread: None,
            query: None,
            events: 0,
        });
        sink(BinlogItem::Begin(TxnStart { id, gtid, ts_us }))
    }

    fn commit(&mut self, event: &Event, sink: &mut Sink<'_>) -> Result<(), DecodeError> {
        let Some(txn) = self.txn.take() else {
            return Ok(());
        };
        let end = u64::from(event.header().log_pos());
        match (&mut self.gtid_state, &txn.gtid) {
            (Some(ResumePosition::MariaDbGtids(p)), Some(Gtid::MariaDb(g))) => p.advance(*g),
            (None, Some(Gtid::MariaDb(g))) => {
                let mut p = MariaDbGtidPos::new();
                p.advance(*g);
                self.gtid_state = Some(ResumePosition::MariaDbGtids(p));
            }
            (Some(ResumePosition::MysqlGtids(s)), Some(Gtid::Mysql(g))) => s.add(g),
            // One GTID is not the executed set (resuming from it would ask the server for
            // its whole history): positions stay file:pos until a start position or a
            // Previous_gtids event gives the whole set.
            (None, Some(Gtid::Mysql(_))) => {}
            // A transaction without a GTID is in no set: a set would never move past it.
            (Some(ResumePosition::MysqlGtids(_)), None) => self.gtid_state = None,
            _ => {}
        }
        self.committed = true;
        let file_pos = BinlogFilePos::new(
            self.file.to_string(),
            if end > 0 { end } else { self.next_pos },
        );
        sink(BinlogItem::Commit(Commit {
            id: txn.id,
            gtid: txn.gtid,
            ts_us: txn.ts_us,
            file_pos,
            gtid_state: self.gtid_state.clone(),
            events: txn.events,
        }))
    }

    /// A statement other than BEGIN/COMMIT: DDL becomes a schema change (and TRUNCATE a
    /// truncate event); cached table maps of the affected tables are dropped.
    fn statement(
        &mut self,
        db: &str,
        sql: String,
        start: u64,
        thread: u32,
        sink: &mut Sink<'_>,
    ) -> Result<(), DecodeError> {
        if let Some(dml) = super::statement::dml(&sql, first_word(&sql), db) {
            return self.statement_dml(dml, db, &sql, start, thread, sink);
        }
        if !is_schema_statement(&sql) {
            return Ok(());
        }
        if !self.filter.database_included(&statement_database(&sql, db)) {
            // Still keep a schema history current (and kept with the position): tables may
            // be renamed into scope.
            if !self.lookup.apply_ddl(db, &sql).is_empty()
                && let Some(history) = self.lookup.snapshot()
            {
                sink(BinlogItem::SchemaHistory(history.into()))?;
            }
            return Ok(());
        }
        let word = first_word(&sql).to_ascii_uppercase();
        let mut tables = self.lookup.apply_ddl(db, &sql);
        tables.retain(|t| self.filter.table_included(&t.database, &t.table));
        for t in &mut tables {
            if let Some(s) = t.schema.take() {
                t.schema = Some(Arc::new(self.filter.project_schema((*s).clone())));
            }
        }
        // Table ids are reassigned after DDL; the next table map rebuilds the definition.
        self.tables.clear();
        let (gtid, ts_us) = self
            .txn
            .as_ref()
            .map(|t| (t.gtid.clone(), t.ts_us))
            .unwrap_or((None, 0));
        if word == "TRUNCATE"
            && let Some((tdb, table)) = truncated_table(&sql, db)
            && self.filter.table_included(&tdb, &table)
        {
            let known = self.by_name.get(&(tdb.clone(), table.clone())).cloned();
            let schema = known.or_else(|| {
                self.lookup
                    .lookup(&tdb, &table)
                    .map(|s| Arc::new(self.filter.project_schema(s)))
            });
            if let Some(schema) = schema {
                self.truncate(schema, start, thread, &sql, sink)?;
            } else {
                tracing::warn!(table = %format!("{tdb}.{table}"), "TRUNCATE of a table whose schema is unknown: emitted as a schema change only");
            }
        }
        // A name that now holds another table's rows (RENAME), or a new table (one of the
        // same name may have been dropped before): what consumers hold of it is gone; the
        // rows come again (capture reads a renamed table again; a new one is empty).
        for t in tables
            .iter()
            .filter(|t| t.replaced || t.kind == TableChangeKind::Create)
        {
            if let Some(schema) = &t.schema {
                self.truncate(schema.clone(), start, thread, &sql, sink)?;
            }
        }
        sink(BinlogItem::SchemaChange(SchemaChange {
            database: db.to_string(),
            ddl: sql,
            gtid,
            position: BinlogFilePos::new(self.file.to_string(), start),
            server_id: self.server_id,
            ts_us,
            tables,
            history: self.lookup.snapshot().map(Into::into),
        }))
    }

    /// A DML statement logged as a statement (see [`super::statement`] for the policy):
    /// an error when it writes a captured table, a truncate when it empties one.
    fn statement_dml(
        &mut self,
        dml: super::statement::Dml,
        db: &str,
        sql: &str,
        start: u64,
        thread: u32,
        sink: &mut Sink<'_>,
    ) -> Result<(), DecodeError> {
        use super::statement::Dml;
        let what = |word: &str, table: &str| {
            let a = if word.starts_with(['A', 'E', 'I', 'O', 'U']) {
                "an"
            } else {
                "a"
            };
            format!(
                "{a} {word} statement writing {table} is in the binlog as a statement, not as row events (the session that ran it had binlog_format=STATEMENT or MIXED): binlake reads row events only, so the replica would miss these changes. Run SET GLOBAL binlog_format='ROW' and put binlog_format = ROW in the server config, make sure no application runs SET SESSION binlog_format (sessions opened before keep their format until they reconnect), then start binlake from a position after this one with a new snapshot of {table}"
            )
        };
        match dml {
            Dml::Empties(tdb, table) => {
                if !self.filter.table_included(&tdb, &table) {
                    return Ok(());
                }
                let known = self.by_name.get(&(tdb.clone(), table.clone())).cloned();
                let schema = known.or_else(|| {
                    self.lookup
                        .lookup(&tdb, &table)
                        .map(|s| Arc::new(self.filter.project_schema(s)))
                });
                match schema {
                    Some(schema) => self.truncate(schema, start, thread, sql, sink),
                    None => Err(self.err(
                        start,
                        Some(&format!("{tdb}.{table}")),
                        "a DELETE of every row of the table, logged as a statement, and its schema is unknown: binlake cannot empty the table in the replica. Re-snapshot the table from a position after this one",
                    )),
                }
            }
            Dml::Writes(word, Some(tables)) => {
                match tables
                    .iter()
                    .find(|(d, t)| self.filter.table_included(d, t))
                {
                    Some((d, t)) => {
                        let name = format!("{d}.{t}");
                        Err(self.err(start, Some(&name), what(&word, &name)))
                    }
                    None => Ok(()),
                }
            }
            Dml::Writes(word, None) => {
                if self.filter.database_included(db) {
                    let name = format!("a table of {db}");
                    Err(self.err(
                        start,
                        None,
                        format!("{} (binlake could not tell which table: the current database {db} is captured)", what(&word, &name)),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// A truncate event of `table` for the statement `sql` at `start`.
    fn truncate(
        &mut self,
        table: Arc<TableSchema>,
        start: u64,
        thread: u32,
        sql: &str,
        sink: &mut Sink<'_>,
    ) -> Result<(), DecodeError> {
        let source = self.source_info(start, 0, Some(thread), Some(sql.into()));
        let txn = self.txn.as_mut().map(|t| {
            t.total_order += 1;
            t.events += 1;
            TransactionInfo {
                id: t.id.clone(),
                total_order: t.total_order,
                data_collection_order: 1,
            }
        });
        sink(BinlogItem::Change(ChangeEvent {
            op: Op::Truncate,
            table,
            before: None,
            after: None,
            source,
            transaction: txn,
        }))
    }

    fn table_map(
        &mut self,
        tme: &TableMapEvent<'_>,
        raw: &[u8],
        start: u64,
    ) -> Result<(), DecodeError> {
        let id = tme.table_id();
        if let Some(Mapped::Table { raw: old, .. }) = self.tables.get(&id)
            && old.as_slice() == raw
        {
            return Ok(());
        }
        let db = tme.database_name();
        let table = tme.table_name();
        if !self.filter.table_included(&db, &table) {
            self.tables.insert(id, Mapped::Skipped);
            return Ok(());
        }
        // Without names the table map needs the known schema; MariaDB's table maps need
        // it for which LONGTEXT columns are JSON, and both for the columns' defaults, which
        // no table map carries.
        let known = self.lookup.lookup(&db, &table);
        let filter = &self.filter;
        let mut def = table_def(self.flavor, tme, known.as_ref(), &|col| {
            filter.column_excluded(&db, &table, col) && !filter.is_key_column(&db, &table, col)
        })
        .map_err(|e| self.err(start, Some(&format!("{db}.{table}")), e))?;
        if filter.has_key_columns(&db, &table) {
            let mut schema = (*def.schema).clone();
            filter.apply_key(&mut schema);
            def.schema = Arc::new(schema);
        }
        def.masks = filter
            .masks_for(&def.schema)
            .map_err(|e| self.err(start, Some(&format!("{db}.{table}")), e))?;
        self.by_name
            .insert((db.into_owned(), table.into_owned()), def.schema.clone());
        self.tables.insert(
            id,
            Mapped::Table {
                def: Arc::new(def),
                raw: raw.to_vec(),
            },
        );
        Ok(())
    }

    fn source_info(
        &self,
        start: u64,
        row: u32,
        thread: Option<u32>,
        query: Option<Arc<str>>,
    ) -> SourceInfo {
        SourceInfo {
            server_id: self.server_id,
            gtid: self.txn.as_ref().and_then(|t| t.gtid.clone()),
            position: EventPosition {
                file: self.file.clone(),
                pos: start,
                row,
            },
            ts_us: self.txn.as_ref().map(|t| t.ts_us).unwrap_or(0),
            snapshot: SnapshotMarker::False,
            thread: thread.or_else(|| self.txn.as_ref().and_then(|t| t.thread)),
            query,
        }
    }

    fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        start: u64,
        sink: &mut Sink<'_>,
    ) -> Result<(), DecodeError> {
        let table_id = rows.table_id();
        let def = match self.tables.get(&table_id) {
            Some(Mapped::Skipped) => return Ok(()),
            Some(Mapped::Table { def, .. }) => def.clone(),
            None => {
                return Err(self.err(
                    start,
                    None,
                    format!("rows event for table id {table_id} without a table map before it"),
                ));
            }
        };
        let qualified = || def.schema.qualified_name();
        let op = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Create,
            RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
        };
        let partial = matches!(rows, RowsEventData::PartialUpdateRowsEvent(_));
        let n = rows.num_columns() as usize;
        if n != def.decoders.len() {
            return Err(self.err(
                start,
                Some(&qualified()),
                format!(
                    "rows event has {n} columns, its table map {}",
                    def.decoders.len()
                ),
            ));
        }
        let before_cols: Option<Vec<bool>> = rows
            .columns_before_image()
            .map(|b| (0..n).map(|i| b.get(i).is_some_and(|x| *x)).collect());
        let after_cols: Option<Vec<bool>> = rows
            .columns_after_image()
            .map(|b| (0..n).map(|i| b.get(i).is_some_and(|x| *x)).collect());
        // Columns the server left out of a row image (`binlog_row_image = MINIMAL` or
        // `NOBLOB`) are `Value::Absent`; an update's after-image takes a column it leaves
        // out (unchanged) from the before-image when that has it.
        let partial_after = after_cols.as_ref().is_some_and(|a| !a.iter().all(|x| *x));
        let data = rows.rows_data();
        let mut c = Cursor::new(data);
        let mut row_index = 0u32;
        let thread = self.txn.as_ref().and_then(|t| t.thread);
        let query = self.txn.as_ref().and_then(|t| t.query.clone());
        while c.remaining() > 0 {
            let left = c.remaining();
            let mut before = match &before_cols {
                Some(present) => Some(
                    decode_image(&def, &mut c, present, false, None)
                        .map_err(|e| self.err(start, Some(&qualified()), e.0))?,
                ),
                None => None,
            };
            let mut after = match &after_cols {
                Some(present) => Some(
                    decode_image(&def, &mut c, present, partial, before.as_ref())
                        .map_err(|e| self.err(start, Some(&qualified()), e.0))?,
                ),
                None => None,
            };
            if c.remaining() == left {
                // Images without a column take no bytes: the rows cannot be told apart
                // (no server writes that; a corrupt event would loop here forever).
                return Err(self.err(
                    start,
                    Some(&qualified()),
                    "the rows event's images have no columns",
                ));
            }
            if op == Op::Create
                && partial_after
                && let Some(row) = after.as_mut()
            {
                fill_defaults(&def.schema, row);
            }
            // Masked columns (after the after-image took what it lacks from the before).
            if let Some(masks) = &def.masks {
                for row in [before.as_mut(), after.as_mut()].into_iter().flatten() {
                    binlake_core::masking::apply(masks, row);
                }
            }
            let (txn_info, gtid, ts_us) = match self.txn.as_mut() {
                Some(t) => {
                    t.total_order += 1;
                    t.events += 1;
                    let dco = t.per_table.entry(table_id).or_default();
                    *dco += 1;
                    (
                        Some(TransactionInfo {
                            id: t.id.clone(),
                            total_order: t.total_order,
                            data_collection_order: *dco,
                        }),
                        t.gtid.clone(),
                        t.ts_us,
                    )
                }
                None => (None, None, 0),
            };
            sink(BinlogItem::Change(ChangeEvent {
                op,
                table: def.schema.clone(),
                before,
                after,
                source: SourceInfo {
                    server_id: self.server_id,
                    gtid,
                    position: EventPosition {
                        file: self.file.clone(),
                        pos: start,
                        row: row_index,
                    },
                    ts_us,
                    snapshot: SnapshotMarker::False,
                    thread,
                    query: query.clone(),
                },
                transaction: txn_info,
            }))?;
            row_index += 1;
        }
        Ok(())
    }
}

/// Decodes one row image (null bitmap + values) into the table's projected columns. For a
/// partial JSON after-image, `before` is the row's before-image to apply diffs to.
fn decode_image(
    def: &TableDef,
    c: &mut Cursor<'_>,
    present: &[bool],
    partial: bool,
    partial_before: Option<&Row>,
) -> Result<Row, RowError> {
    let n = present.iter().filter(|p| **p).count();
    let mut partial_json: Option<Vec<bool>> = None;
    if partial {
        let options = c.lenenc()?;
        if options & 1 != 0 {
            let json_cols = def
                .decoders
                .iter()
                .filter(|d| matches!(d, super::rows::ColumnDecoder::Json { .. }))
                .count();
            let bytes = c.take(json_cols.div_ceil(8))?;
            partial_json = Some(
                (0..json_cols)
                    .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
                    .collect(),
            );
        }
    }
    let nulls = c.take(n.div_ceil(8))?;
    let mut row: Row = Vec::with_capacity(def.schema.columns.len());
    let mut json_index = 0;
    let mut image_index = 0;
    for (i, dec) in def.decoders.iter().enumerate() {
        if !present[i] {
            // Not in this image: in an update's after-image, unchanged, so the
            // before-image's value when that has it; otherwise not known from this event.
            if let Some(j) = def.projection[i] {
                let v = partial_before
                    .and_then(|b| b.get(j))
                    .cloned()
                    .unwrap_or(Value::Absent);
                row.push(v);
            }
            if matches!(dec, super::rows::ColumnDecoder::Json { .. }) {
                json_index += 1;
            }
            continue;
        }
        let k = image_index;
        image_index += 1;
        let is_json = matches!(dec, super::rows::ColumnDecoder::Json { .. });
        let is_partial = is_json
            && partial_json
                .as_ref()
                .is_some_and(|p| p.get(json_index).copied().unwrap_or(false));
        if is_json {
            json_index += 1;
        }
        let v = if nulls[k / 8] & (1 << (k % 8)) != 0 {
            Value::Null
        } else if is_partial {
            let len = c.uint_le(4)? as usize;
            let bytes = c.take(len)?;
            let diffs = json::parse_diffs(bytes).map_err(RowError)?;
            let base = match def.projection[i].and_then(|j| partial_before.and_then(|b| b.get(j))) {
                Some(Value::Json(t)) => t.as_str(),
                Some(Value::Absent) | None => {
                    return Err(RowError(
                        "a partial JSON update of a column whose value is not in the before-image (binlog_row_image = MINIMAL or NOBLOB with binlog_row_value_options = PARTIAL_JSON): set binlog_row_value_options = '' on the server".into(),
                    ));
                }
                _ => "null",
            };
            Value::Json(json::apply_diffs(base, &diffs).map_err(RowError)?)
        } else {
            dec.decode(c)?
        };
        if def.projection[i].is_some() {
            row.push(v);
        }
    }
    Ok(row)
}

/// An INSERT's row image leaves out the columns the statement did not name
/// (`binlog_row_image = MINIMAL`, or blobs under `NOBLOB`): they hold their defaults, filled
/// in here where the schema knows them exactly; the others stay absent.
fn fill_defaults(schema: &binlake_core::TableSchema, row: &mut Row) {
    for (v, col) in row.iter_mut().zip(&schema.columns) {
        if !v.is_absent() {
            continue;
        }
        match &col.default {
            binlake_core::ColumnDefault::Null if col.nullable => *v = Value::Null,
            binlake_core::ColumnDefault::Literal(text) => {
                if let Ok(d) = crate::values::from_mysql(
                    mysql_async::Value::Bytes(text.clone().into_bytes()),
                    &col.ty,
                ) {
                    *v = d;
                }
            }
            _ => {}
        }
    }
}

/// The first (fake) ROTATE of a replication stream arrives before the format description,
/// so the reader does not know yet that events carry a CRC32: its last 4 bytes end up in
/// the file name. They are removed when they are the event's CRC32.
fn strip_checksum<'a>(event: &Event, name: &'a [u8]) -> &'a [u8] {
    let data = event.data();
    if name.len() <= 4 || data.len() < 4 {
        return name;
    }
    let mut header = Vec::with_capacity(19);
    let h = event.header();
    header.extend_from_slice(&h.timestamp().to_le_bytes());
    header.push(h.event_type_raw());
    header.extend_from_slice(&h.server_id().to_le_bytes());
    header.extend_from_slice(&h.event_size().to_le_bytes());
    header.extend_from_slice(&h.log_pos().to_le_bytes());
    header.extend_from_slice(&h.flags_raw().to_le_bytes());
    let (body, sum) = data.split_at(data.len() - 4);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header);
    hasher.update(body);
    if hasher.finalize().to_le_bytes() == sum {
        &name[..name.len() - 4]
    } else {
        name
    }
}

fn ts(secs: u32) -> i64 {
    i64::from(secs) * 1_000_000
}

/// The first keyword of a statement, after comments and whitespace.
fn first_word(sql: &str) -> &str {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("/*") {
            // MySQL's executable comments (`/*!50001 … */`) wrap real statements.
            match rest.find("*/") {
                Some(end) if !rest.starts_with('!') => s = rest[end + 2..].trim_start(),
                _ => {
                    let body = rest
                        .trim_start_matches('!')
                        .trim_start_matches(|c: char| c.is_ascii_digit());
                    s = body.trim_start();
                    break;
                }
            }
        } else if s.starts_with("--") || s.starts_with('#') {
            s = s.find('\n').map(|i| s[i + 1..].trim_start()).unwrap_or("");
        } else {
            break;
        }
    }
    let end = s
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(s.len());
    &s[..end]
}

/// True for statements that change table or database schemas: CREATE/ALTER/DROP of
/// TABLE, DATABASE/SCHEMA or INDEX, RENAME TABLE and TRUNCATE. Account, routine, view,
/// event and trigger statements are not (and `ALTER USER … IDENTIFIED …` carries a
/// password hash that must never be copied into a topic).
fn is_schema_statement(sql: &str) -> bool {
    let first = first_word(sql);
    let rest = &sql[sql.find(first).map(|i| i + first.len()).unwrap_or(0)..];
    let words: Vec<String> = rest
        .split(|c: char| c.is_whitespace() || c == '(' || c == '`')
        .filter(|w| !w.is_empty())
        .take(4)
        .map(str::to_ascii_uppercase)
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    // Skip modifiers that may stand between the verb and the object.
    let mut i = 0;
    while matches!(
        w(i),
        "OR" | "REPLACE"
            | "TEMPORARY"
            | "ONLINE"
            | "OFFLINE"
            | "IGNORE"
            | "UNIQUE"
            | "FULLTEXT"
            | "SPATIAL"
    ) {
        i += 1;
    }
    match first.to_ascii_uppercase().as_str() {
        "TRUNCATE" => true,
        "RENAME" => matches!(w(i), "TABLE" | "TABLES"),
        "CREATE" | "ALTER" | "DROP" => matches!(w(i), "TABLE" | "DATABASE" | "SCHEMA" | "INDEX"),
        _ => false,
    }
}

/// The database a schema statement is about: the qualifier of the object after
/// TABLE/DATABASE/SCHEMA/INDEX … ON when there is one, else the default database.
fn statement_database(sql: &str, default_db: &str) -> String {
    let mut words = sql.split_whitespace();
    while let Some(w) = words.next() {
        let u = w.to_ascii_uppercase();
        let is_database = matches!(u.as_str(), "DATABASE" | "SCHEMA");
        if !is_database && !matches!(u.as_str(), "TABLE" | "ON") {
            continue;
        }
        let mut name = words.next().unwrap_or_default();
        if name.eq_ignore_ascii_case("IF") {
            // IF [NOT] EXISTS
            name = words
                .find(|w| w.eq_ignore_ascii_case("EXISTS"))
                .and(words.next())
                .unwrap_or_default();
        }
        if is_database {
            return name.trim_end_matches(';').trim_matches('`').to_string();
        }
        let name = name.split('(').next().unwrap_or_default();
        return match split_qualified(name) {
            (Some(db), _) => db.trim_matches('`').to_string(),
            (None, _) => default_db.to_string(),
        };
    }
    default_db.to_string()
}

/// `TRUNCATE [TABLE] [db.]t` → (db, t).
fn truncated_table(sql: &str, default_db: &str) -> Option<(String, String)> {
    let mut words = sql.split_whitespace().skip(1);
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case("TABLE") {
        name = words.next()?;
    }
    let name = name.trim_end_matches(';');
    let unquote = |s: &str| s.trim_matches('`').replace("``", "`");
    match split_qualified(name) {
        (Some(db), t) => Some((unquote(db), unquote(t))),
        (None, t) => Some((default_db.to_string(), unquote(t))),
    }
}

pub(super) fn split_qualified(name: &str) -> (Option<&str>, &str) {
    let mut in_quote = false;
    for (i, ch) in name.char_indices() {
        match ch {
            '`' => in_quote = !in_quote,
            '.' if !in_quote => return (Some(&name[..i]), &name[i + 1..]),
            _ => {}
        }
    }
    (None, name)
}

/// What is wrong with an event body mysql_common could not parse, for people: the event
/// type by its protocol name, its size, and the parser's complaint in plain words.
fn unparsable(ty: u8, len: usize, e: &std::io::Error) -> String {
    let name = match mysql_common::binlog::consts::EventType::try_from(ty) {
        Ok(t) => format!("{t:?}"),
        Err(_) => format!("type {ty}"),
    };
    let what = e.to_string();
    let why = if what.contains("enough data") {
        "it ends before the fields it declares (truncated or corrupt)".to_string()
    } else {
        what.trim_start_matches("can't parse: ").to_string()
    };
    format!("the {name} event ({len} bytes) cannot be parsed: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_keywords() {
        assert_eq!(first_word("  begin"), "begin");
        assert_eq!(first_word("/* c */ ALTER TABLE t"), "ALTER");
        assert_eq!(
            first_word("/*!40000 ALTER TABLE t DISABLE KEYS */"),
            "ALTER"
        );
        assert_eq!(first_word("-- x\nDROP TABLE t"), "DROP");
    }

    #[test]
    fn schema_statements() {
        for yes in [
            "CREATE TABLE t (a int)",
            "create or replace table t (a int)",
            "ALTER ONLINE TABLE t ADD b int",
            "DROP TABLE IF EXISTS `t`",
            "CREATE DATABASE d",
            "CREATE UNIQUE INDEX i ON t (a)",
            "RENAME TABLE a TO b",
            "TRUNCATE t",
            "/* x */ ALTER TABLE t DROP c",
        ] {
            assert!(is_schema_statement(yes), "{yes}");
        }
        for no in [
            "ALTER USER 'root'@'localhost' IDENTIFIED WITH 'x' AS 'hash'",
            "CREATE USER u",
            "GRANT SELECT ON *.* TO u",
            "CREATE VIEW v AS SELECT 1",
            "DROP PROCEDURE p",
            "INSERT INTO t VALUES (1)",
        ] {
            assert!(!is_schema_statement(no), "{no}");
        }
    }

    #[test]
    fn statement_databases() {
        assert_eq!(statement_database("DROP DATABASE it_x", "d"), "it_x");
        assert_eq!(
            statement_database("CREATE DATABASE IF NOT EXISTS `a`", "d"),
            "a"
        );
        assert_eq!(
            statement_database("ALTER TABLE `s`.`t` ADD c INT", "d"),
            "s"
        );
        assert_eq!(statement_database("CREATE TABLE t(a int)", "d"), "d");
        assert_eq!(
            statement_database("CREATE INDEX i ON other.t (a)", "d"),
            "other"
        );
    }

    #[test]
    fn truncate_targets() {
        assert_eq!(
            truncated_table("TRUNCATE TABLE `a`.`b`", "d"),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(
            truncated_table("truncate t1", "d"),
            Some(("d".into(), "t1".into()))
        );
        assert_eq!(
            truncated_table("TRUNCATE `x.y`", "d"),
            Some(("d".into(), "x.y".into()))
        );
    }
}
