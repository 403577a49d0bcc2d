//! The report of `semiclass eval`: accuracy, per-class scores, confusion
//! matrices and the most confident mistakes, as files anyone can read
//! without the tool (`report.json`, `per_class.csv`, PNGs) and as a table
//! on the terminal.

mod scores;
mod table;

use std::path::{Path, PathBuf};

use image::RgbImage;
use semiclass_dataset::fsutil::write_atomic;

pub use scores::{class_scores, macro_average, weighted_average};
/// The report's types and file names are the manifest crate's, so that
/// the studio reads `report.json` with the definition that wrote it.
pub use semiclass_manifest::eval_report::{
    Averages, CLASSES_FILE, CONFUSION_COUNTS_FILE, CONFUSION_NORMALIZED_FILE, CheckpointInfo,
    ClassScores, EvalReport, MISTAKES_FILE, MistakeEntry, PREDICTIONS_FILE, PredictionEntry,
    REPORT_FILE,
};
pub use table::table;

use crate::engine::evaluate::EvalResult;
use crate::metrics::quote;

/// The report of `result`; `paths[i]` names store image `i`.
pub fn build_report(
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
