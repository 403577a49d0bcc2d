//! Datasets: a folder on this machine is added by path, checked exactly as
//! `semiclass check` checks it (the `semiclass-dataset` crate), and its
//! report kept in the registry; the report files go to the studio's own
//! folder, never into the dataset.

pub mod pages;
pub mod upload;
pub mod upload_route;

use std::path::{Path, PathBuf};

use semiclass_dataset::{CheckOptions, CheckReport, check_dataset, report};
use serde::{Deserialize, Serialize};

use crate::error::StudioError;
use crate::state::Studio;

/// The files of which a dataset folder holds at least one.
const LIST_FILES: [&str; 4] = ["label.txt", "train.txt", "train_unlabeled.txt", "val.txt"];

/// A check as the studio keeps it: the report (as `check_report.json`
/// has it) and its problems as `semiclass check` prints them.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedCheck {
    pub report: ReportView,
    /// `FILE:LINE: severity: message`, every one.
    pub lines: Vec<ProblemLine>,
    /// The counts table `semiclass check` prints.
    pub summary: String,
}

/// One printed problem and how bad it is (for its colour).
#[derive(Debug, Serialize, Deserialize)]
pub struct ProblemLine {
    pub severity: String,
    pub text: String,
}

/// The parts of a `CheckReport` the pages show.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportView {
    pub check_pass: bool,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub counts: CountsView,
    pub errors: usize,
    pub warnings: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CountsView {
    pub train: SplitView,
    pub val: SplitView,
    pub unlabeled: usize,
    pub test: Option<SplitView>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SplitView {
    pub total: usize,
    pub per_class: Vec<usize>,
}

/// Checks the folder at `path` (a path typed by the user) and records the
/// outcome; returns the dataset's id. A path that is no dataset folder is
/// refused and nothing is recorded.
pub fn add_and_check(studio: &Studio, path: &str) -> Result<i64, StudioError> {
    let root = dataset_folder(path)?;
    let checked = check_dataset(&root, &CheckOptions::default(), &())
        .map_err(|e| StudioError::Invalid(e.to_string()))?;
    let saved = saved_check(&checked);
    let json = serde_json::to_string(&saved).expect("a check serialises");
    let id =
        studio
            .registry()?
            .record_dataset_check(&checked.dataset, checked.check_pass, &json)?;
    write_report_files(studio, id, &checked);
    Ok(id)
}

/// The folder a user named, refused with the reason when it cannot be a
/// dataset: relative (to what?), missing, not a folder, or holding none of
/// the list files.
fn dataset_folder(text: &str) -> Result<PathBuf, StudioError> {
    let text = text.trim();
    let invalid = |why: &str| StudioError::Invalid(format!("{text}: {why}"));
    if text.is_empty() {
        return Err(StudioError::Invalid(
            "give the dataset folder's path (on the machine the studio runs on)".into(),
        ));
    }
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(invalid(
            "not an absolute path; give the whole path, e.g. /data/flowers",
        ));
    }
    if !path.is_dir() {
        return Err(invalid("no such folder on this machine"));
    }
    if !LIST_FILES.iter().any(|f| path.join(f).is_file()) {
        return Err(invalid(
            "not a dataset folder: it holds none of label.txt, train.txt, train_unlabeled.txt, val.txt (README, \"The dataset format\")",
        ));
    }
    Ok(path.to_path_buf())
}

fn saved_check(report: &CheckReport) -> SavedCheck {
    let value = serde_json::to_value(report).expect("a check serialises");
    SavedCheck {
        report: serde_json::from_value(value).expect("the view is a part of the report"),
        lines: report
            .problems
            .iter()
            .map(|p| ProblemLine {
                severity: p.severity.to_string(),
                text: p.to_string(),
            })
            .collect(),
        summary: report::summary(report),
    }
}

/// The folder of dataset `id`'s report files.
pub fn report_dir(studio: &Studio, id: i64) -> PathBuf {
    studio.data_dir.join("datasets").join(id.to_string())
}

/// `check_report.json` and `class_histogram.png`, as `semiclass check`
/// writes them; the page works without them, so failures are only logged.
fn write_report_files(studio: &Studio, id: i64, checked: &CheckReport) {
    let dir = report_dir(studio, id);
    if let Err(e) = report::write_json(checked, &dir) {
        tracing::warn!("{e}");
    }
    if let Err(e) = report::write_histogram(checked, &dir) {
        tracing::warn!("no class histogram: {e}");
    }
}

/// The saved check of a dataset row.
pub fn read_saved(report: &str) -> Result<SavedCheck, StudioError> {
    serde_json::from_str(report)
        .map_err(|e| StudioError::Internal(format!("a saved check report is unreadable: {e}")))
}
