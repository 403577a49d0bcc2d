//! What a run directory holds, as the trainer writes it:
//! per model, `metrics.csv` (read with the trainer's own reader,
//! `semiclass_metrics`), `summary.json` once the model finished (its reader too), and the
//! checkpoints. Nothing here writes; a file not there yet is simply absent.

use std::path::{Path, PathBuf};

use semiclass_metrics::summary::{self, Summary};
use semiclass_metrics::{MetricsTable, Row};
use semiclass_registry::{CheckpointRow, JobRow, Registry, RunRow};

/// One model's folder of a run: the run itself (mode large or small), or
/// `large/` and `small/` of a joint run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDir {
    /// `large` or `small`.
    pub model: &'static str,
    pub path: PathBuf,
}

/// A run folder as the pages show it: a studio job's, or any run the
/// registry recorded (the CLI's, the demo's), with where its files are
/// downloaded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFolder {
    pub dir: PathBuf,
    /// `joint`, `large` or `small`.
    pub mode: String,
    /// The URL its files are under (`/jobs/ID/files`, `/runs/ID/files`).
    pub files_url: String,
}

impl RunFolder {
    pub fn of_job(job: &JobRow) -> RunFolder {
        RunFolder {
            dir: job.run_dir.clone(),
            mode: job_mode(job).unwrap_or("large").to_string(),
            files_url: format!("/jobs/{}/files", job.id),
        }
    }

    pub fn of_run(run: &RunRow) -> RunFolder {
        RunFolder {
            dir: run.run_dir.clone(),
            mode: run.mode.clone(),
            files_url: format!("/runs/{}/files", run.id),
        }
    }

    /// The model folders of the run, in training order.
    pub fn model_dirs(&self) -> Vec<ModelDir> {
        let dir = |model, path| ModelDir { model, path };
        match self.mode.as_str() {
            "joint" => vec![
                dir("large", self.dir.join("large")),
                dir("small", self.dir.join("small")),
            ],
            "small" => vec![dir("small", self.dir.clone())],
            _ => vec![dir("large", self.dir.clone())],
        }
    }
}

/// The job's `--mode`, as it was queued.
pub fn job_mode(job: &JobRow) -> Option<&str> {
    let at = job.args.iter().position(|a| a == "--mode")?;
    job.args.get(at + 1).map(String::as_str)
}

impl ModelDir {
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join(semiclass_metrics::FILE_NAME)
    }

    /// The model's metrics so far (`None` before its first row).
    pub fn metrics(&self) -> Option<MetricsTable> {
        semiclass_metrics::read(&self.metrics_path()).ok()
    }

    /// `summary.json`, once the model finished.
    pub fn summary(&self) -> Option<Summary> {
        summary::read(&self.path).ok()
    }

    /// What changes when the trainer writes: the sizes and times of the
    /// metrics and the summary (cheap to look at every half second).
    pub fn signature(&self) -> [Option<(u64, std::time::SystemTime)>; 2] {
        let look = |p: PathBuf| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.len(), m.modified().ok()?))
        };
        [
            look(self.metrics_path()),
            look(self.path.join(summary::FILE_NAME)),
        ]
    }
}

/// Where one stage stands.
#[derive(Debug, Clone, PartialEq)]
pub struct StageProgress {
    pub model: &'static str,
    pub stage: String,
    pub epoch: Option<u64>,
    /// The stage's last logged step and its planned length (`None` in a
    /// log written before the trainer logged them).
    pub step: Option<u64>,
    pub steps: Option<u64>,
    pub last_top1: Option<f64>,
    pub best_top1: Option<f64>,
    /// Done: a later stage started, or the model's summary lists it.
    pub done: bool,
}

impl StageProgress {
    /// The share done, for the bar (1 once done: a stage may stop early).
    pub fn fraction(&self) -> Option<f64> {
        if self.done {
            return Some(1.0);
        }
        match (self.step, self.steps) {
            (Some(step), Some(steps)) if steps > 0 => Some((step as f64 / steps as f64).min(1.0)),
            _ => None,
        }
    }
}

/// The stages of one model, in the order they ran.
pub fn stages(
    model: &ModelDir,
    table: &MetricsTable,
    summary: Option<&Summary>,
) -> Vec<StageProgress> {
    let mut out: Vec<StageProgress> = Vec::new();
    for row in &table.rows {
        let name = row.get("stage").unwrap_or("");
        if out.last().is_none_or(|s| s.stage != name) {
            if let Some(previous) = out.last_mut() {
                previous.done = true;
            }
            out.push(StageProgress {
                model: model.model,
                stage: name.to_string(),
                epoch: None,
                step: None,
                steps: None,
                last_top1: None,
                best_top1: None,
                done: false,
            });
        }
        let stage = out.last_mut().expect("pushed above");
        update(stage, row);
    }
    if let Some(summary) = summary {
        for stage in &mut out {
            stage.done |= summary.stages.iter().any(|s| s.stage == stage.stage);
        }
    }
    out
}

fn update(stage: &mut StageProgress, row: &Row) {
    let whole = |c: &str| row.number(c).map(|n| n as u64);
    stage.epoch = whole("epoch").or(stage.epoch);
    stage.step = whole("stage_step").or(stage.step);
    stage.steps = whole("stage_steps").or(stage.steps);
    if let Some(top1) = row.number("val_top1") {
        stage.last_top1 = Some(top1);
        stage.best_top1 = Some(stage.best_top1.map_or(top1, |b| b.max(top1)));
    }
}

/// The columns the curves draw, in the order the page's script reads them.
pub const CURVE_COLUMNS: &[&str] = &[
    "step",
    "sup_loss",
    "unsup_loss",
    "mask_ratio",
    "val_top1",
    "val_top5",
];

/// Rows `from..` of a model's metrics as the curves take them: one array
/// of [`CURVE_COLUMNS`] per row, `null` for an empty cell.
pub fn curve_rows(table: &MetricsTable, from: usize) -> Vec<Vec<Option<f64>>> {
    table
        .rows
        .iter()
        .skip(from)
        .map(|row| {
            CURVE_COLUMNS
                .iter()
                .map(|c| row.number(c).filter(|v| v.is_finite()))
                .collect()
        })
        .collect()
}

/// A checkpoint file of a model folder, with what the registry recorded
/// of its latest version (its id, for marking, and its val metrics).
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    /// Relative to the job's run directory (the download path).
    pub rel: String,
    pub bytes: u64,
    pub record: Option<CheckpointRow>,
}

/// The weights in `checkpoints/` (not the resume states: those are for
/// `--resume`), `best.safetensors` first, then by name.
pub fn checkpoint_files(
    registry: &Registry,
    run_dir: &Path,
    model: &ModelDir,
) -> Vec<CheckpointFile> {
    let folder = model.path.join("checkpoints");
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut files: Vec<CheckpointFile> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let weights = name.ends_with(".safetensors") && !name.ends_with(".state.safetensors");
            weights.then_some(e)
        })
        .filter_map(|e| {
            let path = e.path();
            let rel = path.strip_prefix(run_dir).ok()?.to_str()?.to_string();
            // The latest recorded version: the file as it is now, unless
            // it was rewritten outside a training (marking checks the hash).
            let absolute = std::path::absolute(&path).unwrap_or(path);
            let record = registry.checkpoints_at(&absolute).ok()?.into_iter().next();
            Some(CheckpointFile {
                rel,
                bytes: e.metadata().map_or(0, |m| m.len()),
                record,
            })
        })
        .collect();
    files.sort_by_key(|f| (!f.rel.ends_with("/best.safetensors"), f.rel.clone()));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(&str, u64, Option<f64>)]) -> MetricsTable {
        let header = semiclass_metrics::TRAIN_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .collect();
        let rows = rows
            .iter()
            .map(|&(stage, step, top1)| {
                Row::new()
                    .with("stage", stage)
                    .with("step", step)
                    .with("stage_step", step % 10)
                    .with("stage_steps", 10u64)
                    .with("val_top1", top1)
            })
            .collect();
        MetricsTable { header, rows }
    }

    #[test]
    fn stages_come_in_order_and_an_earlier_one_is_done() {
        let model = ModelDir {
            model: "large",
            path: PathBuf::from("/r"),
        };
        let t = table(&[
            ("supervised", 3, None),
            ("supervised", 5, Some(0.5)),
            ("supervised", 8, Some(0.4)),
            ("ssl", 14, None),
        ]);
        let stages = stages(&model, &t, None);
        assert_eq!(stages.len(), 2);
        assert!(stages[0].done && !stages[1].done);
        assert_eq!(stages[0].best_top1, Some(0.5));
        assert_eq!(stages[0].last_top1, Some(0.4));
        assert_eq!(stages[1].step, Some(4));
        assert_eq!(stages[1].fraction(), Some(0.4));
        assert_eq!(stages[0].fraction(), Some(1.0));
    }

    #[test]
    fn curve_rows_leave_empty_cells_null() {
        let t = table(&[("supervised", 3, None), ("supervised", 5, Some(0.5))]);
        let rows = curve_rows(&t, 1);
        assert_eq!(
            rows,
            vec![vec![Some(5.0), None, None, None, Some(0.5), None]]
        );
    }

    #[test]
    fn a_joint_job_has_both_model_folders() {
        let job = |mode: &str| JobRow {
            args: vec!["train".into(), "--mode".into(), mode.into()],
            ..any_job()
        };
        let joint = RunFolder::of_job(&job("joint")).model_dirs();
        assert_eq!(joint.len(), 2);
        assert_eq!(joint[1].path, Path::new("/runs/x/small"));
        assert_eq!(
            RunFolder::of_job(&job("small")).model_dirs()[0].model,
            "small"
        );
        assert_eq!(RunFolder::of_job(&any_job()).model_dirs()[0].model, "large");
    }

    pub fn any_job() -> JobRow {
        JobRow {
            id: 1,
            kind: "train".into(),
            title: "t".into(),
            args: Vec::new(),
            config: String::new(),
            run_dir: PathBuf::from("/runs/x"),
            log_path: PathBuf::from("/logs/x.log"),
            status: semiclass_registry::JobStatus::Queued,
            resume: false,
            pid: None,
            created: 0,
            started: None,
            ended: None,
            message: None,
        }
    }
}
