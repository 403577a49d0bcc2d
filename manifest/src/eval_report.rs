//! The report `semiclass eval` writes (`report.json` and the files next to
//! it): written by the trainer, read by the studio's report page, so both
//! agree on one definition of its fields.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const REPORT_FILE: &str = "report.json";
pub const CLASSES_FILE: &str = "per_class.csv";
pub const PREDICTIONS_FILE: &str = "predictions.csv";
pub const CONFUSION_COUNTS_FILE: &str = "confusion_counts.png";
pub const CONFUSION_NORMALIZED_FILE: &str = "confusion_normalized.png";
pub const MISTAKES_FILE: &str = "mistakes.png";

/// The files of a report folder, as `semiclass eval` names them.
pub const REPORT_FILES: &[&str] = &[
    REPORT_FILE,
    CLASSES_FILE,
    PREDICTIONS_FILE,
    CONFUSION_COUNTS_FILE,
    CONFUSION_NORMALIZED_FILE,
    MISTAKES_FILE,
];

/// The checkpoint that was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    pub path: PathBuf,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    pub model: String,
    pub stage: String,
    pub epoch: u64,
}

/// How one class fared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub id: usize,
    pub name: String,
    /// Images of this class evaluated.
    pub support: u64,
    /// Images predicted as this class.
    pub predicted: u64,
    /// `None` when nothing was predicted as this class.
    pub precision: Option<f64>,
    /// `None` when the class had no images.
    pub recall: Option<f64>,
    /// `None` when the class neither had images nor was predicted.
    pub f1: Option<f64>,
}

/// Averages over the classes that had images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// A misclassified image, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MistakeEntry {
    /// As written in the list, relative to the dataset folder.
    pub path: String,
    pub truth: String,
    pub predicted: String,
    /// Softmax probability of the predicted class.
    pub score: f64,
}

/// One image's answer (a row of `predictions.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionEntry {
    /// As written in the list, relative to the dataset folder.
    pub path: String,
    pub truth: usize,
    pub predicted: usize,
    /// Softmax probability of the predicted class.
    pub score: f64,
}

/// Everything one evaluation measured (`report.json`; every image's
/// answer goes to `predictions.csv` instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub checkpoint: CheckpointInfo,
    pub dataset: PathBuf,
    /// `val`, `test`, or the list file.
    pub source: String,
    pub count: usize,
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub macro_avg: Averages,
    pub weighted_avg: Averages,
    pub classes: Vec<ClassScores>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// The most confident first.
    pub mistakes: Vec<MistakeEntry>,
    /// UTC, RFC 3339.
    pub created: String,
    #[serde(skip)]
    pub predictions: Vec<PredictionEntry>,
}

/// `report.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an evaluation report: {source}; evaluate again with this version", path = path.display())]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl EvalReport {
    /// The few numbers the registry keeps of this evaluation.
    pub fn summary(&self, out_dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "macro_f1": self.macro_avg.f1,
            "report": out_dir.join(REPORT_FILE),
        })
    }

    /// The `report.json` of the report folder `out_dir`.
    pub fn read(out_dir: &Path) -> Result<EvalReport, ReportError> {
        let path = out_dir.join(REPORT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Format { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_report_reads_back_the_same() {
        let report = EvalReport {
            checkpoint: CheckpointInfo {
                path: "/runs/a/checkpoints/best.safetensors".into(),
                sha256: "ab".into(),
                nickname: None,
                model: "resnet18".into(),
                stage: "ssl".into(),
                epoch: 3,
            },
            dataset: "/data/flowers".into(),
            source: "test.txt".into(),
            count: 2,
            top1: 0.5,
            top5: 1.0,
            loss: 0.25,
            macro_avg: Averages {
                precision: 0.25,
                recall: 0.5,
                f1: 0.33,
            },
            weighted_avg: Averages {
                precision: 0.25,
                recall: 0.5,
                f1: 0.33,
            },
            classes: vec![ClassScores {
                id: 0,
                name: "康乃馨".into(),
                support: 2,
                predicted: 1,
                precision: None,
                recall: Some(0.5),
                f1: Some(0.66),
            }],
            confusion: vec![vec![1, 1], vec![0, 0]],
            mistakes: vec![MistakeEntry {
                path: "images/a.png".into(),
                truth: "a".into(),
                predicted: "b".into(),
                score: 0.9,
            }],
            created: "2026-12-07T21:00:00Z".into(),
            predictions: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(REPORT_FILE),
            serde_json::to_vec(&report).unwrap(),
        )
        .unwrap();
        assert_eq!(EvalReport::read(dir.path()).unwrap(), report);
        std::fs::write(dir.path().join(REPORT_FILE), b"{}").unwrap();
        let err = EvalReport::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("report.json: not an evaluation report"),
            "{err}"
        );
    }
}
