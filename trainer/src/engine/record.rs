//! The run directory's `metrics.csv` and `curves.png`, kept current.

use std::path::PathBuf;

use super::TrainError;
use super::evaluate::EvalResult;
use super::setup::RunDir;
use super::stage::{ResumeInfo, StageObserver, StepRecord};
use crate::metrics::{self, MetricsLog, Row, TRAIN_COLUMNS};

/// Appends every log line and evaluation to `metrics.csv`, redraws
/// `curves.png` after each evaluation, then passes records on. Steps in the
/// file run on across stages, so curves of a whole run read left to right.
pub struct Recorder<'a> {
    log: MetricsLog,
    run_dir: PathBuf,
    inner: &'a mut dyn StageObserver,
    /// Steps of the stages before the current one.
    offset: u64,
    stage: Option<String>,
    stage_total: u64,
}

impl<'a> Recorder<'a> {
    /// A new log, or, resuming, the existing one without the rows logged
    /// after the state being resumed.
    pub fn open(
        run: &RunDir,
        resume: Option<&ResumeInfo>,
        inner: &'a mut dyn StageObserver,
    ) -> Result<Self, TrainError> {
        let path = run.path.join(metrics::FILE_NAME);
        let (log, offset, stage) = match resume {
            None => (
                MetricsLog::create(&path, TRAIN_COLUMNS).map_err(to_train)?,
                0,
                None,
            ),
            Some(info) => {
                let offset = steps_before(&path, &info.stage);
                let log = MetricsLog::open_for_resume(&path, TRAIN_COLUMNS, offset + info.step)
                    .map_err(to_train)?;
                (log, offset, Some(info.stage.clone()))
            }
        };
        Ok(Recorder {
            log,
            run_dir: run.path.clone(),
            inner,
            offset,
            stage,
            stage_total: 0,
        })
    }

    fn row(&mut self, r: &StepRecord) -> Row {
        if self.stage.as_deref() != Some(r.stage.as_str()) {
            if self.stage.is_some() {
                self.offset += self.stage_total;
            }
            self.stage = Some(r.stage.clone());
        }
        self.stage_total = r.total_steps;
        Row::new()
            .with("stage", r.stage.as_str())
            .with("epoch", r.epoch)
            .with("step", self.offset + r.step)
            .with("lr", r.lr)
            .with("stage_step", r.step)
            .with("stage_steps", r.total_steps)
    }

    fn append(&mut self, row: &Row) {
        // Training goes on without its log: losing the run to a full disk
        // here would be worse than a gap in the curves.
        if let Err(e) = self.log.append(row) {
            crate::notice!("semiclass: warning: {e}");
        }
    }
}

/// The last step logged by stages other than `stage` (0 when none).
fn steps_before(path: &std::path::Path, stage: &str) -> u64 {
    metrics::read(path)
        .map(|t| {
            t.rows
                .iter()
                .filter(|r| r.get("stage") != Some(stage))
                .filter_map(|r| r.number("step"))
                .fold(0.0, f64::max) as u64
        })
        .unwrap_or(0)
}

fn to_train(e: metrics::MetricsError) -> TrainError {
    TrainError::Resume(e.to_string())
}

impl StageObserver for Recorder<'_> {
    fn on_log(&mut self, r: &StepRecord) {
        let row = self
            .row(r)
            .with("sup_loss", r.sup_loss)
            .with("unsup_loss", r.unsup_loss)
            .with("mask_ratio", r.mask_ratio)
            .with("images_per_s", r.images_per_s)
            .with("data_wait", r.data_wait);
        self.append(&row);
        self.inner.on_log(r);
    }

    fn on_eval(&mut self, r: &StepRecord, result: &EvalResult, best: bool) {
        let row = self
            .row(r)
            .with("val_top1", result.top1)
            .with("val_top5", result.top5);
        self.append(&row);
        if let Err(e) = metrics::write_curves(&self.run_dir) {
            crate::notice!("semiclass: warning: no curves.png: {e}");
        }
        self.inner.on_eval(r, result, best);
    }
}
