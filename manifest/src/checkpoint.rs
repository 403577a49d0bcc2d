//! What a checkpoint says about itself: stored as JSON inside the weight
//! file, so a checkpoint copied anywhere still tells which model, classes,
//! preprocessing and training stage its tensors belong to.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use semiclass_models::Stem;
use serde::{Deserialize, Serialize};

use crate::PreprocessSpec;

/// The version written by this code; readers refuse newer ones.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// Which model of the large -> small pipeline a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The semi-supervised teacher.
    Large,
    /// The distilled student.
    Small,
}

/// Which weights the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsKind {
    /// The exponential moving average of the training weights.
    Ema,
    /// The training weights themselves.
    Raw,
}

/// The teacher a student was distilled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeacherRef {
    pub path: String,
    /// Of the teacher's checkpoint file, lowercase hex.
    pub sha256: String,
}

/// Metadata of a checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    /// timm model name, e.g. `convnext_tiny`.
    pub model: String,
    pub num_classes: usize,
    /// Square input side in pixels.
    pub input_size: u32,
    /// The stem the network was built with (absent in checkpoints written
    /// before the option existed: ImageNet's).
    #[serde(default)]
    pub stem: Stem,
    /// Index i is the name of logit i.
    pub class_names: Vec<String>,
    pub preprocess: PreprocessSpec,
    pub role: Role,
    /// Training stage that produced it, e.g. `supervised`, `semi`, `distill`.
    pub stage: String,
    pub epoch: u64,
    /// Optimizer steps done.
    pub step: u64,
    /// Validation metrics at this point, e.g. `val_top1`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    pub weights: WeightsKind,
    /// UTC time of writing, RFC 3339 (`2025-01-31T12:00:00Z`).
    pub created: String,
    /// The same instant in seconds since the Unix epoch.
    pub created_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<String>,
    /// Only for distilled students.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<TeacherRef>,
}

impl CheckpointMeta {
    /// Why the dataset at `dataset` with `classes` (label.txt's, by id)
    /// cannot be evaluated with these weights: its number of classes
    /// differs. The names may differ (ids are compared).
    pub fn class_count_problem(
        &self,
        dataset: &std::path::Path,
        classes: &[String],
    ) -> Option<String> {
        (classes.len() != self.num_classes).then(|| {
            format!(
                "{}: label.txt defines {} classes but the checkpoint was trained on {}; evaluate it on a dataset with its classes",
                dataset.display(),
                classes.len(),
                self.num_classes
            )
        })
    }

    /// Metadata of weights that were not trained (random initialisation, for
    /// benchmarks and tests): a small model at step 0 of stage `stage`, no
    /// metrics, stamped now.
    pub fn untrained(
        model: &str,
        class_names: Vec<String>,
        input_size: u32,
        preprocess: PreprocessSpec,
        stage: &str,
    ) -> CheckpointMeta {
        let mut meta = CheckpointMeta {
            format_version: CHECKPOINT_FORMAT_VERSION,
            model: model.into(),
            num_classes: class_names.len(),
            input_size,
            stem: Stem::ImageNet,
            class_names,
            preprocess,
            role: Role::Small,
            stage: stage.into(),
            epoch: 0,
            step: 0,
            metrics: BTreeMap::new(),
            weights: WeightsKind::Raw,
            created: String::new(),
            created_unix: 0,
            run_id: None,
            run_dir: None,
            teacher: None,
        };
        meta.stamp_now();
        meta
    }

    /// Sets `created` and `created_unix` to the current time, or to
    /// `SOURCE_DATE_EPOCH` when that is set (the reproducible-builds
    /// convention): two runs of the same training then write byte-identical
    /// checkpoints.
    pub fn stamp_now(&mut self) {
        let fixed = std::env::var("SOURCE_DATE_EPOCH").ok();
        let unix = source_date_epoch(fixed.as_deref()).unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        self.created_unix = unix;
        self.created = rfc3339_utc(unix);
    }
}

/// The time `SOURCE_DATE_EPOCH` holds (decimal Unix seconds), if it holds one.
fn source_date_epoch(value: Option<&str>) -> Option<u64> {
    value?.trim().parse().ok()
}

/// `unix` seconds as an RFC 3339 UTC timestamp, e.g. `1970-01-01T00:00:00Z`.
pub fn rfc3339_utc(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs % 3600 / 60, secs % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Year, month, day of `days` since 1970-01-01 in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`), so that no date crate is
/// needed for one timestamp.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400`: the leap day of a year divisible by 400.
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn source_date_epoch_fixes_the_time_only_when_it_is_a_number() {
        assert_eq!(source_date_epoch(Some("1700000000\n")), Some(1_700_000_000));
        for ignored in [None, Some(""), Some("yesterday"), Some("-5")] {
            assert_eq!(source_date_epoch(ignored), None, "{ignored:?}");
        }
    }
}
