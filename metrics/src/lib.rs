//! `metrics.csv` in a run directory: one row per logged step or evaluation,
//! readable by a spreadsheet or pandas without semiclass, and drawn as
//! `curves.png` next to it.
//!
//! Rows are appended and flushed one at a time, so a killed run keeps every
//! row it logged. A resumed run drops the rows logged after its checkpoint
//! before appending, so no step appears twice.
//!
//! `step` runs on across a model's stages (curves read left to right);
//! `stage_step` of `stage_steps` is where the stage itself stands, which is
//! what a progress display shows.

mod curves;
pub mod summary;

pub use curves::{plot, write_curves};

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use semiclass_dataset::fsutil::write_atomic;

/// The log's file name inside a run directory.
pub const FILE_NAME: &str = "metrics.csv";
/// The curves drawn from the log, next to it.
pub const CURVES_FILE_NAME: &str = "curves.png";
/// The columns a training run logs; any other header works as well.
pub const TRAIN_COLUMNS: &[&str] = &[
    "stage",
    "epoch",
    "step",
    "lr",
    "sup_loss",
    "unsup_loss",
    "mask_ratio",
    "images_per_s",
    "data_wait",
    "val_top1",
    "val_top5",
    "stage_step",
    "stage_steps",
];
/// The column resuming filters on.
pub(crate) const STEP: &str = "step";

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: header is `{found}` but this run logs `{expected}`: resume with the same columns or move the file aside"
    )]
    HeaderMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: bad header: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path}:{line}: {found} fields, the header has {expected}")]
    Malformed {
        path: PathBuf,
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error("{path}: column `{column}` is not in the header `{header}`")]
    UnknownColumn {
        path: PathBuf,
        column: String,
        header: String,
    },
    #[error(transparent)]
    Plot(#[from] semiclass_plots::PlotError),
}

/// A value that can fill one cell; `None` (or a non-value) leaves it empty.
pub trait CellValue {
    /// The cell text, `None` for an empty cell.
    fn to_cell(&self) -> Option<String>;
}

impl CellValue for f64 {
    /// Seven significant digits: enough for any curve, and the CSV stays
    /// readable (no `0.10000000149011612` from a widened f32).
    fn to_cell(&self) -> Option<String> {
        if !self.is_finite() {
            return Some(self.to_string());
        }
        let rounded: f64 = format!("{self:.6e}").parse().unwrap_or(*self);
        Some(rounded.to_string())
    }
}

impl CellValue for f32 {
    fn to_cell(&self) -> Option<String> {
        Some(self.to_string())
    }
}

macro_rules! display_cell {
    ($($t:ty),*) => {$(
        impl CellValue for $t {
            fn to_cell(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
display_cell!(u32, u64, usize, i32, i64, str, String);

impl<T: CellValue + ?Sized> CellValue for &T {
    fn to_cell(&self) -> Option<String> {
        (**self).to_cell()
    }
}

impl<T: CellValue> CellValue for Option<T> {
    fn to_cell(&self) -> Option<String> {
        self.as_ref().and_then(CellValue::to_cell)
    }
}

/// One row: column name to cell text; a column not set is an empty cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    cells: BTreeMap<String, String>,
}

impl Row {
    /// A row with every cell empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `column` (an empty value clears it) and returns the row, for
    /// building a row in one expression.
    pub fn with(mut self, column: &str, value: impl CellValue) -> Self {
        self.set(column, value);
        self
    }

    /// Sets `column`; an empty value (`None`) clears it.
    pub fn set(&mut self, column: &str, value: impl CellValue) {
        match value.to_cell() {
            Some(text) if !text.is_empty() => self.cells.insert(column.to_string(), text),
            _ => self.cells.remove(column),
        };
    }

    /// The cell text, `None` when empty.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.cells.get(column).map(String::as_str)
    }

    /// The cell as a number, `None` when empty or not a number.
    pub fn number(&self, column: &str) -> Option<f64> {
        self.get(column)?.trim().parse().ok()
    }

    fn columns(&self) -> impl Iterator<Item = &str> {
        self.cells.keys().map(String::as_str)
    }
}

/// A log read back: its header and its rows, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsTable {
    pub header: Vec<String>,
    pub rows: Vec<Row>,
}

/// An open log that appends one row at a time.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    header: Vec<String>,
    file: File,
}

impl MetricsLog {
    /// Starts a new log at `path` with `header`, replacing any old one.
    pub fn create(path: &Path, header: &[&str]) -> Result<Self, MetricsError> {
        let header = check_header(path, header)?;
        let text = format_record(&header);
        write_atomic(path, text.as_bytes()).map_err(|e| io_error(path, e))?;
        Self::open_append(path, header)
    }

    /// Continues the log of a run resumed from the checkpoint at
    /// `resume_step`: rows with a step after it are dropped (the resumed run
    /// logs them again), as are rows without a step and a row cut short by
    /// a kill. Without a log yet, starts one. A different header is an
    /// error rather than a silently mixed file.
    pub fn open_for_resume(
        path: &Path,
        header: &[&str],
        resume_step: u64,
    ) -> Result<Self, MetricsError> {
        let header = check_header(path, header)?;
        if !header.iter().any(|c| c == STEP) {
            return Err(bad_header(path, format!("no `{STEP}` column to resume by")));
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_error(path, e)),
        };
        if text.is_empty() {
            let columns: Vec<&str> = header.iter().map(String::as_str).collect();
            return Self::create(path, &columns);
        }
        let table = parse_table(path, &text)?;
        // A log written before columns were added continues under the new
        // header, its old rows with those cells empty.
        let upgradable = table.header.iter().all(|c| header.contains(c));
        if !upgradable {
            return Err(MetricsError::HeaderMismatch {
                path: path.to_path_buf(),
                found: table.header.join(","),
                expected: header.join(","),
            });
        }
        let kept = table
            .rows
            .iter()
            .filter(|row| row.number(STEP).is_some_and(|s| s <= resume_step as f64));
        let mut out = format_record(&header);
        kept.for_each(|row| out.push_str(&format_row(&header, row)));
        write_atomic(path, out.as_bytes()).map_err(|e| io_error(path, e))?;
        Self::open_append(path, header)
    }

    fn open_append(path: &Path, header: Vec<String>) -> Result<Self, MetricsError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            header,
            file,
        })
    }

    /// Appends `row` as one line. A column the header lacks is an error (a
    /// typo would otherwise lose the value silently). The line goes to the
    /// OS in one write, so a killed process keeps it; no fsync, as a log
    /// line is not worth a disk flush per step.
    pub fn append(&mut self, row: &Row) -> Result<(), MetricsError> {
        if let Some(column) = row.columns().find(|c| !self.header.iter().any(|h| h == c)) {
            return Err(MetricsError::UnknownColumn {
                path: self.path.clone(),
                column: column.to_string(),
                header: self.header.join(","),
            });
        }
        let line = format_row(&self.header, row);
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| io_error(&self.path, e))
    }

    /// Where the log is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The columns, in file order.
    pub fn header(&self) -> &[String] {
        &self.header
    }
}

/// Reads a log: its header and complete rows (a last row cut short by a
/// kill is left out).
pub fn read(path: &Path) -> Result<MetricsTable, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    parse_table(path, &text)
}

fn io_error(path: &Path, source: std::io::Error) -> MetricsError {
    MetricsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad_header(path: &Path, reason: String) -> MetricsError {
    MetricsError::BadHeader {
        path: path.to_path_buf(),
        reason,
    }
}

/// Column names must be non-empty and distinct, or cells would be ambiguous.
fn check_header(path: &Path, header: &[&str]) -> Result<Vec<String>, MetricsError> {
    if header.is_empty() {
        return Err(bad_header(path, "no columns".into()));
    }
    for (i, name) in header.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(bad_header(path, format!("column {} has no name", i + 1)));
        }
        if header[..i].contains(name) {
            return Err(bad_header(path, format!("column `{name}` appears twice")));
        }
    }
    Ok(header.iter().map(|c| c.to_string()).collect())
}

// ---- CSV text ----------------------------------------------------------

/// One CSV line, fields quoted only where RFC 4180 needs it.
fn format_record<S: AsRef<str>>(fields: &[S]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| quote(f.as_ref())).collect();
    let mut line = quoted.join(",");
    line.push('\n');
    line
}

fn format_row(header: &[String], row: &Row) -> String {
    let fields: Vec<&str> = header.iter().map(|c| row.get(c).unwrap_or("")).collect();
    format_record(&fields)
}

/// One CSV field, RFC 4180-quoted only where needed (every CSV the trainer
/// writes goes through here).
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn parse_table(path: &Path, text: &str) -> Result<MetricsTable, MetricsError> {
    let mut records = parse_records(text).into_iter();
    let Some((_, header)) = records.next() else {
        return Err(bad_header(path, "empty file".into()));
    };
    let mut rows = Vec::new();
    for (line, fields) in records {
        if fields.len() != header.len() {
            return Err(MetricsError::Malformed {
                path: path.to_path_buf(),
                line,
                found: fields.len(),
                expected: header.len(),
            });
        }
        let mut row = Row::new();
        header.iter().zip(&fields).for_each(|(c, v)| row.set(c, v));
        rows.push(row);
    }
    Ok(MetricsTable { header, rows })
}

/// Splits CSV text into `(line number, fields)` records, skipping blank
/// lines. Text after the last newline is a row cut short by a kill and is
/// left out.
fn parse_records(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut records = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut in_quotes, mut line, mut start) = (false, 1, 1);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => in_quotes = false,
            ('"', false) if field.is_empty() => in_quotes = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            ('\n', false) => {
                line += 1;
                // Spreadsheets on Windows save CRLF line ends.
                if field.ends_with('\r') {
                    field.pop();
                }
                fields.push(std::mem::take(&mut field));
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    records.push((start, std::mem::take(&mut fields)));
                }
                fields.clear();
                start = line;
            }
            (c, _) => {
                line += usize::from(c == '\n');
                field.push(c);
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_row(step: u64, loss: f64) -> Row {
        Row::new()
            .with("stage", "ssl")
            .with("epoch", step / 100)
            .with("step", step)
            .with("lr", 0.03 * (1.0 - step as f64 / 1000.0))
            .with("sup_loss", loss)
            .with("unsup_loss", loss * 0.5)
            .with("mask_ratio", (step as f64 / 1000.0).min(0.95))
            .with("images_per_s", 1200.0 + (step % 7) as f64 * 10.0)
            .with("data_wait", 0.02)
    }

    fn eval_row(step: u64) -> Row {
        let top1 = 0.3 + 0.5 * step as f64 / 1000.0;
        Row::new()
            .with("stage", "ssl")
            .with("epoch", step / 100)
            .with("step", step)
            .with("val_top1", top1)
            .with("val_top5", (top1 + 0.25).min(1.0))
    }

    fn small_log(path: &Path, last_step: u64) -> MetricsLog {
        let mut log = MetricsLog::create(path, TRAIN_COLUMNS).unwrap();
        for step in (10..=last_step).step_by(10) {
            let loss = 2.5 / (1.0 + step as f64 / 100.0);
            log.append(&train_row(step, loss)).unwrap();
            if step % 100 == 0 {
                log.append(&eval_row(step)).unwrap();
            }
        }
        log
    }

    #[test]
    fn rows_round_trip_with_empty_cells_and_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut log = MetricsLog::create(&path, &["stage", "step", "loss", "note"]).unwrap();
        let rows = [
            Row::new()
                .with("stage", "ssl")
                .with("step", 1u64)
                .with("loss", 0.1f32),
            Row::new()
                .with("step", 2u64)
                .with("loss", None::<f64>)
                .with("note", "a, \"b\"\nc"),
            Row::new().with("step", 3u64).with("loss", f64::NAN),
        ];
        rows.iter().for_each(|r| log.append(r).unwrap());
        let table = read(&path).unwrap();
        assert_eq!(table.header, ["stage", "step", "loss", "note"]);
        assert_eq!(table.rows, rows);
        assert_eq!(table.rows[0].get("loss"), Some("0.1"));
        assert!(table.rows[2].number("loss").unwrap().is_nan());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("stage,step,loss,note\nssl,1,0.1,\n,2,,\"a, \"\"b\"\"\nc\"\n"),
            "{text}"
        );
    }

    #[test]
    fn floats_keep_seven_significant_digits() {
        assert_eq!(0.1f32.to_cell().unwrap(), "0.1");
        assert_eq!((0.1f32 as f64).to_cell().unwrap(), "0.1");
        assert_eq!(123456789.0f64.to_cell().unwrap(), "123456800");
        assert_eq!(3e-5f64.to_cell().unwrap(), "0.00003");
        assert_eq!(f64::INFINITY.to_cell().unwrap(), "inf");
    }

    #[test]
    fn resume_drops_rows_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        drop(small_log(&path, 300));
        // A kill in the middle of a write leaves half a line behind.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ssl,3,31")
            .unwrap();
        let mut log = MetricsLog::open_for_resume(&path, TRAIN_COLUMNS, 200).unwrap();
        let kept = read(&path).unwrap().rows;
        assert_eq!(
            kept.len(),
            22,
            "20 train rows and 2 eval rows up to step 200"
        );
        assert!(kept.iter().all(|r| r.number("step").unwrap() <= 200.0));
        log.append(&train_row(210, 0.5)).unwrap();
        let steps: Vec<f64> = read(&path)
            .unwrap()
            .rows
            .iter()
            .map(|r| r.number("step").unwrap())
            .collect();
        assert_eq!(steps.last(), Some(&210.0));
        assert_eq!(steps.iter().filter(|&&s| s == 210.0).count(), 1);
    }

    #[test]
    fn resume_continues_a_log_written_before_columns_were_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let old: Vec<&str> = TRAIN_COLUMNS
            .iter()
            .copied()
            .filter(|c| !c.starts_with("stage_"))
            .collect();
        let mut log = MetricsLog::create(&path, &old).unwrap();
        log.append(&train_row(10, 1.0)).unwrap();
        log.append(&train_row(20, 0.9)).unwrap();
        drop(log);
        let mut log = MetricsLog::open_for_resume(&path, TRAIN_COLUMNS, 10).unwrap();
        log.append(
            &train_row(20, 0.8)
                .with("stage_step", 20u64)
                .with("stage_steps", 100u64),
        )
        .unwrap();
        let table = read(&path).unwrap();
        assert_eq!(table.header, TRAIN_COLUMNS);
        assert_eq!(table.rows.len(), 2);
        assert_eq!(table.rows[0].get("stage_steps"), None);
        assert_eq!(table.rows[0].number("sup_loss"), Some(1.0));
        assert_eq!(table.rows[1].number("stage_steps"), Some(100.0));
    }

    #[test]
    fn resume_without_a_log_starts_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut log = MetricsLog::open_for_resume(&path, TRAIN_COLUMNS, 500).unwrap();
        log.append(&eval_row(600)).unwrap();
        assert_eq!(read(&path).unwrap().rows.len(), 1);
    }

    #[test]
    fn a_different_header_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        drop(small_log(&path, 50));
        let before = std::fs::read(&path).unwrap();
        let err = MetricsLog::open_for_resume(&path, &["step", "loss"], 10).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, MetricsError::HeaderMismatch { .. }),
            "{message}"
        );
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the log is left as it was"
        );
    }

    #[test]
    fn bad_headers_and_unknown_columns_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(MetricsLog::create(&path, &["step", "step"]).is_err());
        assert!(MetricsLog::create(&path, &[]).is_err());
        assert!(MetricsLog::open_for_resume(&path, &["epoch"], 1).is_err());
        let mut log = MetricsLog::create(&path, &["step"]).unwrap();
        let err = log.append(&Row::new().with("stpe", 1u64)).unwrap_err();
        assert!(err.to_string().contains("`stpe`"), "{err}");
        std::fs::write(&path, "step,loss\n1,2,3\n").unwrap();
        assert!(matches!(
            read(&path),
            Err(MetricsError::Malformed { line: 2, .. })
        ));
    }

    #[test]
    fn curves_are_drawn_next_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        drop(small_log(&dir.path().join(FILE_NAME), 1000));
        let png = write_curves(dir.path()).unwrap();
        assert_eq!(png, dir.path().join(CURVES_FILE_NAME));
        let image = image::open(&png).unwrap().to_rgb8();
        let drawn = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(drawn > 20_000, "curves look empty: {drawn} drawn pixels");
    }
}
