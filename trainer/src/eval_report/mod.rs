//! The report of `semiclass eval`: accuracy, per-class scores, confusion
//! matrices and the most confident mistakes, as files anyone can read
//! without the tool (`report.json`, `per_class.csv`, PNGs) and as a table
//! on the terminal.

mod scores;
mod table;

use std::path::{Path, PathBuf};

use image::RgbImage;
use semiclass_dataset::fsutil::write_atomic;
use serde::Serialize;

pub use scores::{Averages, ClassScores, class_scores, macro_average, weighted_average};
pub use table::table;

use crate::engine::evaluate::EvalResult;
use crate::metrics::quote;

pub const REPORT_FILE: &str = "report.json";
pub const CLASSES_FILE: &str = "per_class.csv";
pub const PREDICTIONS_FILE: &str = "predictions.csv";
pub const CONFUSION_COUNTS_FILE: &str = "confusion_counts.png";
pub const CONFUSION_NORMALIZED_FILE: &str = "confusion_normalized.png";
pub const MISTAKES_FILE: &str = "mistakes.png";

/// The checkpoint that was evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointInfo {
    pub path: PathBuf,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    pub model: String,
    pub stage: String,
    pub epoch: u64,
}

/// A misclassified image, by name.
#[derive(Debug, Clone, Serialize)]
pub struct MistakeEntry {
    /// As written in the list, relative to the dataset folder.
    pub path: String,
    pub truth: String,
    pub predicted: String,
    /// Softmax probability of the predicted class.
    pub score: f64,
}

/// One image's answer (a row of `predictions.csv`).
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Serialize)]
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

impl EvalReport {
    /// The report of `result`; `paths[i]` names store image `i`.
    pub fn new(
        checkpoint: CheckpointInfo,
        (dataset, source): (PathBuf, String),
        class_names: &[String],
        result: &EvalResult,
        paths: &[String],
    ) -> EvalReport {
        let classes = class_scores(class_names, &result.confusion);
        let name = |c: usize| class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
        let mistakes = result
            .mistakes
            .iter()
            .map(|m| MistakeEntry {
                path: paths[m.index].clone(),
                truth: name(m.truth),
                predicted: name(m.predicted),
                score: m.score,
            })
            .collect();
        let predictions = result
            .predictions
            .iter()
            .map(|p| PredictionEntry {
                path: paths[p.index].clone(),
                truth: p.truth,
                predicted: p.predicted,
                score: p.score,
            })
            .collect();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        EvalReport {
            checkpoint,
            dataset,
            source,
            count: result.count,
            top1: result.top1,
            top5: result.top5,
            loss: result.loss,
            macro_avg: macro_average(&classes),
            weighted_avg: weighted_average(&classes),
            classes,
            confusion: result.confusion.clone(),
            mistakes,
            created: semiclass_manifest::checkpoint::rfc3339_utc(unix),
            predictions,
        }
    }

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
}

/// A report file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot write: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes `report.json` and `per_class.csv` into `out_dir` (created).
pub fn write_tables(report: &EvalReport, out_dir: &Path) -> Result<(), WriteError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = out_dir.join(name);
        std::fs::create_dir_all(out_dir)
            .and_then(|()| write_atomic(&path, bytes))
            .map_err(|source| WriteError { path, source })
    };
    let json = serde_json::to_vec_pretty(report).expect("a report serialises");
    write(REPORT_FILE, &json)?;
    write(CLASSES_FILE, classes_csv(&report.classes).as_bytes())?;
    let names: Vec<String> = report.classes.iter().map(|c| c.name.clone()).collect();
    write(
        PREDICTIONS_FILE,
        predictions_csv(&report.predictions, &names).as_bytes(),
    )
}

fn predictions_csv(predictions: &[PredictionEntry], class_names: &[String]) -> String {
    let name = |c: usize| class_names.get(c).map_or("", String::as_str);
    let mut csv = String::from("path,truth_id,truth,predicted_id,predicted,score\n");
    for p in predictions {
        csv.push_str(&format!(
            "{},{},{},{},{},{:.6}\n",
            quote(&p.path),
            p.truth,
            quote(name(p.truth)),
            p.predicted,
            quote(name(p.predicted)),
            p.score
        ));
    }
    csv
}

/// Draws both confusion matrices and the mistakes gallery (`images[i]`
/// shows `report.mistakes[i]`); returns a warning per picture that could
/// not be drawn, as the numbers matter more than the pictures.
pub fn write_pictures(
    report: &EvalReport,
    class_names: &[String],
    images: &[RgbImage],
    out_dir: &Path,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for (file, normalized) in [
        (CONFUSION_COUNTS_FILE, false),
        (CONFUSION_NORMALIZED_FILE, true),
    ] {
        let path = out_dir.join(file);
        if let Err(e) =
            semiclass_plots::confusion_matrix(&path, class_names, &report.confusion, normalized)
        {
            warnings.push(format!("{}: {e}", path.display()));
        }
    }
    let captions: Vec<[String; 3]> = report
        .mistakes
        .iter()
        .map(|m| {
            [
                format!("true: {}", m.truth),
                format!("predicted: {}", m.predicted),
                format!("score {:.3}  {}", m.score, m.path),
            ]
        })
        .collect();
    let tiles: Vec<semiclass_plots::Tile> = images
        .iter()
        .zip(&captions)
        .map(|(image, caption)| semiclass_plots::Tile { image, caption })
        .collect();
    let title = match tiles.len() {
        0 => format!("no mistakes on {} images", report.count),
        n => format!("the {n} most confident mistakes ({} images)", report.count),
    };
    let path = out_dir.join(MISTAKES_FILE);
    if let Err(e) = semiclass_plots::gallery(&path, &title, &tiles) {
        warnings.push(format!("{}: {e}", path.display()));
    }
    warnings
}

fn classes_csv(classes: &[ClassScores]) -> String {
    let number = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    let mut csv = String::from("class_id,class,support,predicted,precision,recall,f1\n");
    for c in classes {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            c.id,
            quote(&c.name),
            c.support,
            c.predicted,
            number(c.precision),
            number(c.recall),
            number(c.f1)
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_quotes_names_that_need_it_and_leaves_undefined_scores_empty() {
        let names = ["康乃馨".to_string(), "a, \"b\"".to_string()];
        let classes = class_scores(&names, &[vec![1, 0], vec![1, 0]]);
        let csv = classes_csv(&classes);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "class_id,class,support,predicted,precision,recall,f1"
        );
        assert_eq!(lines[1], "0,康乃馨,1,2,0.500000,1.000000,0.666667");
        assert_eq!(lines[2], "1,\"a, \"\"b\"\"\",1,0,,0.000000,0.000000");
    }

    #[test]
    fn every_image_has_a_prediction_row() {
        let names = ["coat".to_string(), "bag, small".to_string()];
        let rows = [
            PredictionEntry {
                path: "images/a b.png".into(),
                truth: 0,
                predicted: 1,
                score: 0.75,
            },
            PredictionEntry {
                path: "images/c.png".into(),
                truth: 1,
                predicted: 1,
                score: 0.5,
            },
        ];
        assert_eq!(
            predictions_csv(&rows, &names),
            "path,truth_id,truth,predicted_id,predicted,score\n\
             images/a b.png,0,coat,1,\"bag, small\",0.750000\n\
             images/c.png,1,\"bag, small\",1,\"bag, small\",0.500000\n"
        );
    }
}
