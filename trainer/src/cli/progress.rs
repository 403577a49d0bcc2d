//! What a training shows on the terminal: a progress bar for the current
//! stage (or image decoding, or teacher predictions) and one line per log
//! interval and per evaluation, printed above the bar.

use indicatif::{ProgressBar, ProgressStyle};
use semiclass_trainer::engine::evaluate::EvalResult;
use semiclass_trainer::engine::stage::{StageObserver, StepRecord};

/// The run's one progress bar; hidden when stderr is not a terminal.
#[derive(Clone)]
pub struct Terminal {
    bar: ProgressBar,
}

impl Terminal {
    pub fn new() -> Self {
        Terminal {
            bar: ProgressBar::new(0),
        }
    }

    /// Draws nothing (a data-parallel rank other than 0).
    pub fn hidden() -> Self {
        Terminal {
            bar: ProgressBar::hidden(),
        }
    }

    /// Switches the bar to counting decoded images.
    pub fn decoding(&self, total: usize) {
        self.restyle("decoding {bar:40} {pos}/{len} images ({per_sec})", total);
    }

    pub fn image_decoded(&self) {
        self.bar.inc(1);
    }

    /// Teacher predictions: `done` of `total` images.
    pub fn teacher(&self, done: usize, total: usize) {
        if self.bar.length() != Some(total as u64) || done == 0 {
            self.restyle("teacher predictions {bar:40} {pos}/{len} images", total);
        }
        self.bar.set_position(done as u64);
    }

    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    /// Prints above the bar; still printed when the bar is hidden (logs
    /// redirected to a file), unlike `ProgressBar::println`.
    fn line(&self, text: String) {
        self.bar.suspend(|| println!("{text}"));
    }

    fn restyle(&self, template: &str, total: usize) {
        self.bar.reset();
        self.bar
            .set_style(ProgressStyle::with_template(template).expect("valid template"));
        self.bar.set_length(total as u64);
    }
}

impl StageObserver for Terminal {
    fn on_log(&mut self, r: &StepRecord) {
        if self.bar.length() != Some(r.total_steps) || self.bar.message() != r.stage {
            self.restyle(
                "[{msg}] {bar:40} step {pos}/{len} ({eta} left)",
                r.total_steps as usize,
            );
            self.bar.set_message(r.stage.clone());
        }
        self.bar.set_position(r.step);
        self.line(format!(
            "[{}] epoch {} step {}/{} lr {:.5} sup_loss {:.4} unsup_loss {:.4} mask {:.2} {:.0} img/s data-wait {:.0}%",
            r.stage,
            r.epoch,
            r.step,
            r.total_steps,
            r.lr,
            r.sup_loss,
            r.unsup_loss,
            r.mask_ratio,
            r.images_per_s,
            100.0 * r.data_wait
        ));
    }

    fn on_eval(&mut self, r: &StepRecord, result: &EvalResult, best: bool) {
        self.line(format!(
            "[{}] epoch {} val top-1 {:.2}% top-5 {:.2}% loss {:.4}{}",
            r.stage,
            r.epoch,
            100.0 * result.top1,
            100.0 * result.top5,
            result.loss,
            if best { " (best)" } else { "" }
        ));
    }
}
