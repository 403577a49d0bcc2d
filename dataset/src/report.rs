//! Writing a check's outcome: `check_report.json`, `class_histogram.png`,
//! and the text shown on the terminal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use semiclass_plots::{GroupedBars, PlotError, horizontal_bars};
use unicode_width::UnicodeWidthStr;

use crate::check::CheckReport;
use crate::fsutil::write_atomic;
use crate::problem::Problem;

pub const REPORT_FILE: &str = "check_report.json";
pub const HISTOGRAM_FILE: &str = "class_histogram.png";

/// A report file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: cannot write: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Plot { path: PathBuf, source: PlotError },
}

/// Writes the JSON report (of a dataset or of one list) to `out_dir`
/// (created if needed).
pub fn write_json(report: &impl serde::Serialize, out_dir: &Path) -> Result<PathBuf, ReportError> {
    let path = out_dir.join(REPORT_FILE);
    let io = |source| ReportError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(io)?;
    let json = serde_json::to_vec_pretty(report).expect("report serialises");
    write_atomic(&path, &json).map_err(io)?;
    Ok(path)
}

/// Draws train and val counts per class to `out_dir/class_histogram.png`.
pub fn write_histogram(report: &CheckReport, out_dir: &Path) -> Result<PathBuf, ReportError> {
    let path = out_dir.join(HISTOGRAM_FILE);
    let chart = GroupedBars {
        title: "images per class",
        categories: &report.class_names,
        series: &[
            ("train", &report.counts.train.per_class),
            ("val", &report.counts.val.per_class),
        ],
    };
    horizontal_bars(&path, &chart).map_err(|source| ReportError::Plot {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Problems as terminal lines. After `max_per_kind` lines of one kind in one
/// file the rest are counted in a single note, so a folder of ten thousand
/// tiny images does not bury the one real error (the JSON keeps them all).
pub fn problem_lines(problems: &[Problem], max_per_kind: usize) -> Vec<String> {
    let mut shown: HashMap<(&str, &str), usize> = HashMap::new();
    let mut lines = Vec::new();
    for p in problems {
        let n = shown.entry((p.file.as_str(), p.code)).or_default();
        *n += 1;
        if *n <= max_per_kind {
            lines.push(p.to_string());
        }
    }
    let mut hidden: Vec<_> = shown
        .into_iter()
        .filter(|(_, n)| *n > max_per_kind)
        .collect();
    hidden.sort();
    for ((file, code), n) in hidden {
        lines.push(format!(
            "{file}: note: {} more '{code}' problems not shown; all are in {REPORT_FILE}",
            n - max_per_kind
        ));
    }
    lines
}

/// Counts per split and per class, as a table.
pub fn summary(report: &CheckReport) -> String {
    let c = &report.counts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} classes; train {} labeled, train_unlabeled {}, val {}{}",
        report.num_classes,
        c.train.total,
        c.unlabeled,
        c.val.total,
        c.test
            .as_ref()
            .map(|t| format!(", test {}", t.total))
            .unwrap_or_default()
    );
    // Terminal columns, not chars: a CJK character takes two.
    let name_width = report
        .class_names
        .iter()
        .map(|n| n.width())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let test_header = if c.test.is_some() { "     test" } else { "" };
    let _ = writeln!(
        out,
        "  {:>4}  {:<name_width$}  {:>8} {:>8}{test_header}",
        "id", "name", "train", "val"
    );
    for (id, name) in report.class_names.iter().enumerate() {
        let count = |s: &crate::check::SplitCount| s.per_class.get(id).copied().unwrap_or(0);
        let test = c
            .test
            .as_ref()
            .map(|t| format!(" {:>8}", count(t)))
            .unwrap_or_default();
        let pad = name_width.saturating_sub(name.width());
        let _ = writeln!(
            out,
            "  {id:>4}  {name}{}  {:>8} {:>8}{test}",
            " ".repeat(pad),
            count(&c.train),
            count(&c.val)
        );
    }
    let _ = write!(
        out,
        "{} images decoded, {} failed; {} errors, {} warnings: {}",
        report.images.decoded,
        report.images.failed,
        report.errors,
        report.warnings,
        if report.check_pass {
            "check passed"
        } else {
            "check FAILED"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Severity;

    fn problem(file: &str, line: usize, code: &'static str) -> Problem {
        Problem {
            file: file.into(),
            line: Some(line),
            severity: Severity::Warning,
            code,
            message: "m".into(),
        }
    }

    #[test]
    fn repeated_kinds_are_folded_into_one_note() {
        let mut problems: Vec<Problem> = (1..=5)
            .map(|l| problem("train.txt", l, "small-image"))
            .collect();
        problems.push(problem("train.txt", 9, "missing-image"));
        let lines = problem_lines(&problems, 2);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], "train.txt:1: warning: m");
        assert_eq!(lines[2], "train.txt:9: warning: m");
        assert_eq!(
            lines[3],
            "train.txt: note: 3 more 'small-image' problems not shown; all are in check_report.json"
        );
    }
}
