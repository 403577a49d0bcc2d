//! `summary.json`: a finished model's result in its run directory,
//! readable without the tool. The trainer writes it when a model's
//! pipeline ends; `train --mode joint` reads it back when it resumes the
//! small model, and the studio's run page shows it.

use std::path::{Path, PathBuf};

use semiclass_dataset::fsutil::write_atomic;
use serde::{Deserialize, Serialize};

/// The file's name inside a model's run directory.
pub const FILE_NAME: &str = "summary.json";

/// The reference the model is measured against (the trainer's `baseline`
/// computes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// How it was computed, for reports.
    pub method: String,
    pub labeled: usize,
    pub val_top1: f64,
    pub test_top1: Option<f64>,
}

impl Baseline {
    /// `1-NN on 8x8 thumbnails of the 130 labeled images`.
    pub fn describe(&self) -> String {
        format!("{} of the {} labeled images", self.method, self.labeled)
    }
}

/// One finished stage: its best checkpoint and how long it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub stage: String,
    /// `null` when the stage had no finite val accuracy.
    pub val_top1: Option<f64>,
    pub best: PathBuf,
    /// Optimizer steps it ran (fewer than planned when it stopped early).
    pub steps: u64,
}

/// What a finished model's pipeline reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `checkpoints/best.safetensors`: the best val accuracy of all stages.
    pub best: PathBuf,
    pub best_stage: String,
    pub val_top1: Option<f64>,
    /// Of `best` on test.txt, when the dataset has one (never used to pick it).
    pub test_top1: Option<f64>,
    pub test_top5: Option<f64>,
    pub test_images: Option<usize>,
    pub baseline: Option<Baseline>,
    /// Whether it trained with horizontal flips (what `data.flip: auto`
    /// decided); absent in summaries older than that setting.
    #[serde(default)]
    pub flip: Option<bool>,
    #[serde(default)]
    pub stages: Vec<StageSummary>,
}

/// Why a summary could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a run summary: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Reads `run_dir/summary.json`.
pub fn read(run_dir: &Path) -> Result<Summary, SummaryError> {
    let path = run_dir.join(FILE_NAME);
    let text = std::fs::read_to_string(&path).map_err(|source| SummaryError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| SummaryError::Parse { path, source })
}

/// Writes `run_dir/summary.json` (atomically: a reader never sees half).
pub fn write(run_dir: &Path, summary: &Summary) -> Result<PathBuf, SummaryError> {
    let path = run_dir.join(FILE_NAME);
    let text = serde_json::to_string_pretty(summary).expect("a summary serialises");
    write_atomic(&path, text.as_bytes()).map_err(|source| SummaryError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_round_trips_and_a_missing_stage_accuracy_is_null() {
        let dir = tempfile::tempdir().unwrap();
        let summary = Summary {
            best: dir.path().join("checkpoints/best.safetensors"),
            best_stage: "ssl".into(),
            val_top1: Some(0.9),
            test_top1: None,
            test_top5: None,
            test_images: None,
            baseline: Some(Baseline {
                method: "1-nearest-neighbour on 8x8 thumbnails".into(),
                labeled: 16,
                val_top1: 0.5,
                test_top1: None,
            }),
            flip: Some(true),
            stages: vec![StageSummary {
                stage: "supervised".into(),
                val_top1: Some(f64::NEG_INFINITY).filter(|v| v.is_finite()),
                best: dir.path().join("checkpoints/supervised-best.safetensors"),
                steps: 4,
            }],
        };
        write(dir.path(), &summary).unwrap();
        assert_eq!(read(dir.path()).unwrap(), summary);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.contains("\"val_top1\": null"), "{text}");
        std::fs::write(dir.path().join(FILE_NAME), "{").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("summary.json: not a run summary"), "{err}");
    }

    #[test]
    fn a_summary_from_before_flips_were_decided_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"best": "/r/best.safetensors", "best_stage": "ssl", "val_top1": 0.5,
                "test_top1": null, "test_top5": null, "test_images": null, "baseline": null,
                "stages": [{"stage": "ssl", "val_top1": 0.5, "best": "/r/ssl-best.safetensors", "steps": 2}]}"#,
        )
        .unwrap();
        let summary = read(dir.path()).unwrap();
        assert_eq!((summary.flip, summary.stages.len()), (None, 1));
    }
}
