//! Snapshot progress for people and machines: a progress bar on a terminal (rows, chunks,
//! rate, ETA), a log line after the first chunk and every 10 s otherwise, and metrics
//! (`binlake_snapshot_remaining_rows`, `binlake_snapshot_tables_remaining`, besides the
//! rows and chunks counters).
//!
//! Totals come from the server's row-count estimates (`information_schema.TABLES`), so
//! the ETA is an estimate too; rows are counted exactly.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use binlake_mysql::snapshot::SnapshotProgress;

/// How often a progress line is logged when not on a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct SnapshotReport {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    rows_at_start: u64,
    last_log: Instant,
    estimates: HashMap<String, u64>,
    /// Rows emitted of each table being read (since this process began it).
    table_rows: HashMap<String, u64>,
}

impl SnapshotReport {
    /// Starts reporting `progress`, with the estimated rows of each table.
    pub(crate) fn new(progress: &SnapshotProgress, estimates: &HashMap<String, u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "snapshot {msg} [{bar:30}] {human_pos}/~{human_len} rows, {per_sec}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        SnapshotReport {
            bar,
            started: Instant::now(),
            rows_at_start: progress.rows,
            // The first chunk is reported at once.
            last_log: Instant::now()
                .checked_sub(LOG_EVERY)
                .unwrap_or_else(Instant::now),
            estimates: estimates.clone(),
            table_rows: HashMap::new(),
        }
    }

    /// Rows still to read, by the estimates: those of the tables left, less what was
    /// read of each.
    fn remaining(&self, progress: &SnapshotProgress) -> u64 {
        progress
            .tables
            .iter()
            .map(|t| {
                let est = self.estimates.get(t).copied().unwrap_or(0);
                est.saturating_sub(self.table_rows.get(t).copied().unwrap_or(0))
            })
            .sum()
    }

    /// Reports a chunk of `rows` rows of `table` emitted; `table_done`: it was its last.
    pub(crate) fn chunk(
        &mut self,
        progress: &SnapshotProgress,
        table: &str,
        rows: u64,
        table_done: bool,
    ) {
        if table_done {
            self.table_rows.remove(table);
        } else {
            *self.table_rows.entry(table.to_string()).or_default() += rows;
        }
        let remaining = self.remaining(progress);
        let done = progress.rows;
        let secs = self.started.elapsed().as_secs_f64();
        let rate = (done - self.rows_at_start.min(done)) as f64 / secs.max(0.001);
        crate::telemetry::gauge("binlake_snapshot_remaining_rows", &[], remaining as f64);
        crate::telemetry::gauge(
            "binlake_snapshot_tables_remaining",
            &[],
            progress.tables.len() as f64,
        );
        if let Some(bar) = &self.bar {
            bar.set_length(done + remaining);
            bar.set_position(done);
            bar.set_message(format!(
                "{table} ({} tables left, {} chunks)",
                progress.tables.len(),
                progress.chunks
            ));
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            let eta_s = (rate > 0.0).then(|| (remaining as f64 / rate).round());
            tracing::info!(
                table,
                rows = done,
                chunks = progress.chunks,
                remaining_rows_estimate = remaining,
                tables_left = progress.tables.len(),
                rows_per_s = rate.round(),
                eta_s,
                "snapshot progress"
            );
        }
    }

    /// The snapshot is complete.
    pub(crate) fn finish(&mut self) {
        crate::telemetry::gauge("binlake_snapshot_remaining_rows", &[], 0.0);
        crate::telemetry::gauge("binlake_snapshot_tables_remaining", &[], 0.0);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
