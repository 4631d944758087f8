//! The lake's half of `binlake verify` (the algorithm is in the binary's `src/verify.rs`):
//! rows of the primary and of the replica turned into the same comparable form.
//!
//! # One representation for both sides
//!
//! A row is compared as the bytes of Arrow's row format ([`arrow::row`]) of the columns
//! the replica holds, built from the replica's Arrow types: primary rows (core
//! [`Value`]s, as the snapshot reads them) go through [`ColumnBuilder`], the very code
//! that writes them into the lake, and replica rows are read back from the Delta table
//! and cast to the same types. So both sides are hashed by the same code from the same
//! representation, and no canonical text rendering of DECIMAL, temporal, unsigned,
//! binary or JSON values has to agree between MySQL and Rust. (What this does not check
//! is the `Value` → Arrow mapping itself, which is lossless by construction and tested
//! in `arrow_map`.)
//!
//! The key's row format orders keys as the server does for integer, DECIMAL, YEAR, DATE,
//! DATETIME, TIMESTAMP and binary-string keys, so a replica row is placed in the
//! primary's key range by comparing bytes. Text keys are ordered by the server's
//! collation, which Arrow does not know: tables with one are refused
//! ([`RowCodec::new`]).
//!
//! A row's hash is 128 bits (two SipHash-1-3 with different prefixes) of its bytes;
//! a chunk's digest is the count and the wrapping sum of its rows' hashes, so that rows
//! can be added in any order and duplicates do not cancel out (as XOR would let them).

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use binlake_core::{ColumnType, Row, TableSchema, Value};
pub use deltalake::DeltaTable;
use deltalake::datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::arrow_map::{ColumnBuilder, replica_schema};
use crate::{Error, Result};

fn verr(e: impl std::fmt::Display) -> Error {
    Error::Query(e.to_string())
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// 128-bit hash of a row's bytes: two SipHash-1-3 (std's `DefaultHasher`, whose
/// instances from `new` all hash alike) of the bytes behind different prefixes.
pub fn hash128(bytes: &[u8]) -> u128 {
    let mut a = std::hash::DefaultHasher::new();
    let mut b = std::hash::DefaultHasher::new();
    a.write_u8(0x5a);
    b.write_u8(0xa5);
    a.write(bytes);
    b.write(bytes);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// Count and sum of row hashes: the digest of a set of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    /// Rows added.
    pub rows: u64,
    /// Wrapping sum of their hashes.
    pub sum: u128,
}

impl Digest {
    /// Adds a row's hash.
    pub fn add(&mut self, hash: u128) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(hash);
    }
}

/// Turns rows of one table (primary `Value`s or replica Arrow batches) into key bytes and
/// row hashes. See the module docs.
pub struct RowCodec {
    table: Arc<TableSchema>,
    schema: SchemaRef,
    key: Vec<usize>,
    keys: RowConverter,
    rows: RowConverter,
}

impl std::fmt::Debug for RowCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCodec")
            .field("table", &self.table.qualified_name())
            .finish_non_exhaustive()
    }
}

/// Whether a key column of this type is ordered by the server as its Arrow row bytes are.
fn key_orders_like_the_server(ty: &ColumnType) -> bool {
    match ty {
        ColumnType::Integer { .. }
        | ColumnType::Year
        | ColumnType::Date
        | ColumnType::DateTime { .. }
        | ColumnType::Timestamp { .. }
        | ColumnType::Bytes { .. } => true,
        ColumnType::Decimal { precision, .. } => {
            *precision <= crate::arrow_map::MAX_DECIMAL_PRECISION
        }
        _ => false,
    }
}

impl RowCodec {
    /// The codec of `table` (the columns the lake holds, as capture projects them). A table
    /// without a primary key, or whose key has a column the server orders by a collation
    /// (text, ENUM, …) or as something Arrow orders otherwise, is refused with the reason.
    pub fn new(table: Arc<TableSchema>) -> std::result::Result<RowCodec, String> {
        if table.primary_key.is_empty() {
            return Err("the table has no primary key: its rows cannot be matched by key".into());
        }
        for &i in &table.primary_key {
            let c = &table.columns[i];
            if !key_orders_like_the_server(&c.ty) {
                return Err(format!(
                    "key column {} is {}, which the server orders by a collation or otherwise than binlake can: only integer, DECIMAL, YEAR, DATE, DATETIME, TIMESTAMP and binary-string keys can be verified",
                    c.name,
                    c.ty.sql_name()
                ));
            }
        }
        let schema: SchemaRef = Arc::new(replica_schema(&table));
        let fields = |idx: &mut dyn Iterator<Item = usize>| {
            idx.map(|i| SortField::new(schema.field(i).data_type().clone()))
                .collect::<Vec<_>>()
        };
        let key = table.primary_key.clone();
        let keys =
            RowConverter::new(fields(&mut key.iter().copied())).map_err(|e| e.to_string())?;
        let rows = RowConverter::new(fields(&mut (0..schema.fields().len())))
            .map_err(|e| e.to_string())?;
        Ok(RowCodec {
            table,
            schema,
            key,
            keys,
            rows,
        })
    }

    /// The table.
    pub fn table(&self) -> &Arc<TableSchema> {
        &self.table
    }

    /// Arrow columns of primary rows.
    fn columns_of(&self, rows: &[Row]) -> Result<Vec<ArrayRef>> {
        let mut out = Vec::with_capacity(self.table.columns.len());
        for (i, c) in self.table.columns.iter().enumerate() {
            let mut b = ColumnBuilder::new(&c.ty, rows.len());
            for r in rows {
                b.append(r.get(i).unwrap_or(&Value::Null))
                    .map_err(|reason| Error::Value {
                        table: self.table.qualified_name(),
                        column: c.name.clone(),
                        reason,
                    })?;
            }
            out.push(b.finish());
        }
        Ok(out)
    }

    /// The columns of a replica or change-log batch, by name, cast to the replica's types.
    fn columns_of_batch(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let mut out = Vec::with_capacity(self.schema.fields().len());
        for f in self.schema.fields() {
            let col = match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => c.clone(),
                Some(c) => arrow::compute::cast(c, f.data_type()).map_err(|e| {
                    verr(format!(
                        "{}.{}: the lake's {} cannot be read as {}: {e}",
                        self.table.qualified_name(),
                        f.name(),
                        c.data_type(),
                        f.data_type()
                    ))
                })?,
                // A column the lake has not got (yet): all NULL.
                None => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
            };
            out.push(col);
        }
        Ok(out)
    }

    fn encode(&self, cols: &[ArrayRef]) -> Result<(Rows, Rows)> {
        let key_cols: Vec<ArrayRef> = self.key.iter().map(|&i| cols[i].clone()).collect();
        let keys = self.keys.convert_columns(&key_cols).map_err(verr)?;
        let rows = self.rows.convert_columns(cols).map_err(verr)?;
        Ok((keys, rows))
    }

    /// Calls `f(key bytes, row hash, row index)` for each primary row.
    pub fn each_row(&self, rows: &[Row], mut f: impl FnMut(&[u8], u128, usize)) -> Result<()> {
        let cols = self.columns_of(rows)?;
        let (keys, rows) = self.encode(&cols)?;
        for i in 0..rows.num_rows() {
            f(keys.row(i).as_ref(), hash128(rows.row(i).as_ref()), i);
        }
        Ok(())
    }

    /// The key bytes of primary rows.
    pub fn keys_of(&self, rows: &[Row]) -> Result<Vec<Vec<u8>>> {
        let cols = self.columns_of(rows)?;
        let key_cols: Vec<ArrayRef> = self.key.iter().map(|&i| cols[i].clone()).collect();
        let keys = self.keys.convert_columns(&key_cols).map_err(verr)?;
        Ok(keys.iter().map(|k| k.as_ref().to_vec()).collect())
    }

    /// Calls `f(key bytes, row hash, row index)` for each row of a replica batch.
    pub fn each_batch_row(
        &self,
        batch: &RecordBatch,
        mut f: impl FnMut(&[u8], u128, usize),
    ) -> Result<()> {
        let cols = self.columns_of_batch(batch)?;
        let (keys, rows) = self.encode(&cols)?;
        for i in 0..rows.num_rows() {
            f(keys.row(i).as_ref(), hash128(rows.row(i).as_ref()), i);
        }
        Ok(())
    }

    /// A key for people: `id=5, k=2`.
    pub fn describe_key(&self, key: &[u8]) -> String {
        let Ok(arrays) = self.key_arrays(key) else {
            return format!("{key:02x?}");
        };
        let opts = arrow::util::display::FormatOptions::default().with_null("NULL");
        self.key
            .iter()
            .zip(&arrays)
            .map(|(&i, a)| {
                let v = arrow::util::display::ArrayFormatter::try_new(a.as_ref(), &opts)
                    .map(|f| f.value(0).to_string())
                    .unwrap_or_default();
                format!("{}={v}", self.table.columns[i].name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn key_arrays(&self, key: &[u8]) -> Result<Vec<ArrayRef>> {
        let parser = self.keys.parser();
        let row = parser.parse(key);
        self.keys.convert_rows([row]).map_err(verr)
    }

    /// The key's values as a row of the table (other columns NULL), for a delete of a key
    /// the primary does not have. `None` for key types binlake does not read back here
    /// (only integers and binary strings).
    pub fn key_row(&self, key: &[u8]) -> Option<Row> {
        let arrays = self.key_arrays(key).ok()?;
        let mut row: Row = vec![Value::Null; self.table.columns.len()];
        for (&i, a) in self.key.iter().zip(&arrays) {
            if a.is_null(0) {
                return None;
            }
            let unsigned = matches!(
                self.table.columns[i].ty,
                ColumnType::Integer { unsigned: true, .. }
            );
            let int = |v: i64| match unsigned {
                true => Value::UInt(v as u64),
                false => Value::Int(v),
            };
            use arrow::array::AsArray;
            use arrow::datatypes as t;
            row[i] = match (a.data_type(), &self.table.columns[i].ty) {
                (DataType::Int8, ColumnType::Integer { .. }) => {
                    int(a.as_primitive::<t::Int8Type>().value(0) as i64)
                }
                (DataType::Int16, ColumnType::Integer { .. }) => {
                    int(a.as_primitive::<t::Int16Type>().value(0) as i64)
                }
                (DataType::Int32, ColumnType::Integer { .. }) => {
                    int(a.as_primitive::<t::Int32Type>().value(0) as i64)
                }
                (DataType::Int64, ColumnType::Integer { .. }) => {
                    int(a.as_primitive::<t::Int64Type>().value(0))
                }
                (DataType::Decimal128(_, 0), ColumnType::Integer { .. }) => {
                    Value::UInt(u64::try_from(a.as_primitive::<t::Decimal128Type>().value(0)).ok()?)
                }
                (DataType::Binary, ColumnType::Bytes { .. }) => {
                    Value::Bytes(a.as_binary::<i32>().value(0).to_vec())
                }
                _ => return None,
            };
        }
        Some(row)
    }
}

/// One change of a change log, for verify's replay (see `src/verify.rs`).
#[derive(Debug, Clone)]
pub struct LoggedChange {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The row's hash after the change; `None` for a delete.
    pub hash: Option<u128>,
    /// `__op`: `c`, `u`, `d`, `r` or `t`.
    pub op: char,
    /// The binlog file of the change (or of a snapshot row's high watermark).
    pub file: String,
    /// Its byte position.
    pub pos: u64,
    /// Its row image left columns out (`__absent`, `binlog_row_image = MINIMAL` or
    /// `NOBLOB`): `hash` is not the row's.
    pub partial: bool,
}

/// The replica's last applied position (`file`, `pos`) per its latest commit record;
/// `None` when no commit of the table says.
pub async fn replica_position(replica: &DeltaTable) -> Result<Option<(String, u64)>> {
    let applied = crate::table::read_applied(replica, &[]).await?;
    Ok(applied
        .freshness
        .and_then(|f| Some((f.file?, f.pos)))
        .filter(|(f, _)| !f.is_empty()))
}

/// Which change-log entries a replica version lacks (see [`changes_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Those of change-log commits after this Delta version (`__seq` ≥ (v + 1) × 2³²):
    /// exact.
    Version(u64),
    /// Those at or after this binlog position (file, byte position): may include changes
    /// the replica has (a snapshot's rows share their chunk's position), which are
    /// applied again.
    Position(String, u64),
    /// For a replica `materialize` keeps: per partition of its topic, the last Kafka
    /// offset the replica holds (`None`: nothing of it); those after it: exact (each
    /// batch's commits to both tables record the same offsets).
    Offsets(Vec<(i32, Option<i64>)>),
    /// All of them.
    All,
}

/// The change-log Delta version of the last batch `replica` holds: the newest commit of
/// `changes` whose `txn` action of `app` (the writer's app id) is at most the replica's
/// own `txn` version of it. Both tables commit each batch with the same `txn`, so the
/// change-log entries after that version are exactly the changes the replica lacks.
/// `None` when the replica holds no `txn` of `app` or the commits are no longer in the
/// log.
pub async fn replica_batch_in_changes(
    replica: &DeltaTable,
    changes: &DeltaTable,
    app: &str,
) -> Result<Option<u64>> {
    let Some(batch) = crate::table::txn_version(replica, app).await? else {
        return Ok(None);
    };
    let Some(latest) = changes.version() else {
        return Ok(None);
    };
    let store = changes.log_store();
    for v in (0..=latest).rev() {
        let Some(bytes) = store.read_commit_entry(v).await.map_err(verr)? else {
            return Ok(None);
        };
        for line in bytes.split(|b| *b == b'\n') {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            let txn = &action["txn"];
            if txn["appId"] == app
                && let Some(version) = txn["version"].as_i64()
                && version <= batch
            {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// Streams the rows of `replica` (the version it was loaded at) through `codec`:
/// `f(key bytes, row hash)` per row, batch by batch (memory: one batch at a time).
pub async fn scan_replica(
    replica: &DeltaTable,
    codec: &RowCodec,
    mut f: impl FnMut(&[u8], u128),
) -> Result<u64> {
    let ctx = SessionContext::new();
    replica
        .update_datafusion_session(&ctx.state())
        .map_err(verr)?;
    let provider = replica.table_provider().await.map_err(verr)?;
    let have: Vec<String> = provider
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let cols: Vec<String> = codec
        .schema
        .fields()
        .iter()
        .filter(|f| have.contains(f.name()))
        .map(|f| ident(f.name()))
        .collect();
    ctx.register_table("replica", provider).map_err(verr)?;
    let df = ctx
        .sql(&format!("SELECT {} FROM replica", cols.join(", ")))
        .await
        .map_err(verr)?;
    let mut stream = df.execute_stream().await.map_err(verr)?;
    let mut n = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(verr)?;
        n += batch.num_rows() as u64;
        codec.each_batch_row(&batch, |k, h, _| f(k, h))?;
    }
    Ok(n)
}

/// The changes of `changes` (a change log) that a replica version lacks (`from`, see
/// [`Since`]), in change-log order (`__seq`). Memory grows with the changes returned:
/// those made since the replica version was loaded.
pub async fn changes_since(
    changes: &DeltaTable,
    codec: &RowCodec,
    from: &Since,
) -> Result<Vec<LoggedChange>> {
    let ctx = SessionContext::new();
    changes
        .update_datafusion_session(&ctx.state())
        .map_err(verr)?;
    let provider = changes.table_provider().await.map_err(verr)?;
    let have: Vec<String> = provider
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    ctx.register_table("changes", provider).map_err(verr)?;
    let cols: Vec<String> = codec
        .schema
        .fields()
        .iter()
        .filter(|f| have.contains(f.name()))
        .map(|f| ident(f.name()))
        .collect();
    let filter = match from {
        Since::Version(v) => format!("WHERE \"__seq\" >= {}", (v + 1) << 32),
        Since::Offsets(held) => {
            let mut or: Vec<String> = held
                .iter()
                .map(|(p, o)| match o {
                    Some(o) => {
                        format!("(\"__kafka_partition\" = {p} AND \"__kafka_offset\" > {o})")
                    }
                    None => format!("\"__kafka_partition\" = {p}"),
                })
                .collect();
            // Partitions the topic did not have when the offsets were read: all of them.
            let known: Vec<String> = held.iter().map(|(p, _)| p.to_string()).collect();
            if !known.is_empty() {
                or.push(format!(
                    "\"__kafka_partition\" NOT IN ({})",
                    known.join(", ")
                ));
            }
            match or.is_empty() {
                true => String::new(),
                false => format!("WHERE {}", or.join(" OR ")),
            }
        }
        // Binlog file names of one server sort by their sequence number (same base,
        // zero-padded); a longer name is a later file past 999999.
        Since::Position(file, pos) => format!(
            "WHERE length(\"__binlog_file\") > {len} OR (length(\"__binlog_file\") = {len} AND (\"__binlog_file\" > '{f}' OR (\"__binlog_file\" = '{f}' AND \"__binlog_pos\" >= {pos})))",
            len = file.len(),
            f = file.replace('\'', "''"),
        ),
        Since::All => String::new(),
    };
    let partial = match have.iter().any(|h| h == crate::table::ABSENT) {
        true => format!("\"{}\" IS NOT NULL", crate::table::ABSENT),
        false => "false".to_string(),
    };
    let sql = format!(
        "SELECT {}, \"__op\", \"__binlog_file\", \"__binlog_pos\", {partial} AS \"__partial\" FROM changes {filter} ORDER BY \"__seq\" ASC NULLS FIRST, \"__binlog_file\", \"__binlog_pos\", \"__binlog_row\", \"__op\" DESC",
        cols.join(", ")
    );
    let df = ctx.sql(&sql).await.map_err(verr)?;
    let mut stream = df.execute_stream().await.map_err(verr)?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(verr)?;
        // A column of the result, as `ty` (Delta may give strings as views).
        let column = |name: &str, ty: &DataType| -> Result<ArrayRef> {
            let c = batch
                .column_by_name(name)
                .ok_or_else(|| verr(format!("no {name}")))?;
            arrow::compute::cast(c, ty).map_err(verr)
        };
        let ops = column("__op", &DataType::Utf8)?;
        let files = column("__binlog_file", &DataType::Utf8)?;
        let poss = column("__binlog_pos", &DataType::Int64)?;
        let partials = column("__partial", &DataType::Boolean)?;
        use arrow::array::AsArray;
        let ops = ops.as_string::<i32>();
        let files = files.as_string::<i32>();
        let poss = poss.as_primitive::<arrow::datatypes::Int64Type>();
        let partials = partials.as_boolean();
        codec.each_batch_row(&batch, |key, hash, i| {
            let op = ops.value(i).chars().next().unwrap_or('?');
            out.push(LoggedChange {
                key: key.to_vec(),
                hash: (op != 'd' && op != 't').then_some(hash),
                op,
                file: match files.is_null(i) {
                    true => String::new(),
                    false => files.value(i).to_string(),
                },
                pos: poss.value(i).max(0) as u64,
                partial: partials.value(i),
            });
        })?;
    }
    Ok(out)
}

/// Per key, its changes (indices into the list, in order).
pub fn by_key(changes: &[LoggedChange]) -> HashMap<Vec<u8>, Vec<usize>> {
    let mut m: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if c.op != 't' {
            m.entry(c.key.clone()).or_default().push(i);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use binlake_core::{Column, ColumnType};

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            database: "d".into(),
            table: "t".into(),
            columns: vec![
                Column::new(
                    "id",
                    ColumnType::Integer {
                        bits: 64,
                        unsigned: true,
                    },
                    false,
                ),
                Column::new(
                    "v",
                    ColumnType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                    true,
                ),
            ],
            primary_key: vec![0],
        })
    }

    #[test]
    fn keys_order_as_values_and_read_back() {
        let codec = RowCodec::new(table()).unwrap();
        let rows: Vec<Row> = [1u64, 255, 256, u64::MAX]
            .iter()
            .map(|&k| vec![Value::UInt(k), Value::Decimal("1.50".into())])
            .collect();
        let keys = codec.keys_of(&rows).unwrap();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(codec.key_row(&keys[3]).unwrap()[0], Value::UInt(u64::MAX));
        assert_eq!(codec.describe_key(&keys[1]), "id=255");
        let mut hashes = Vec::new();
        codec.each_row(&rows, |_, h, _| hashes.push(h)).unwrap();
        let other = vec![vec![Value::UInt(1), Value::Decimal("1.51".into())]];
        codec
            .each_row(&other, |_, h, _| assert_ne!(h, hashes[0]))
            .unwrap();
    }
}
