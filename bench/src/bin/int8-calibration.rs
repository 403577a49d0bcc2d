//! Calibration methods compared on one checkpoint: the float graph is
//! calibrated once on the dataset's train + unlabeled images, then an int8
//! graph per range method is evaluated beside the float graph on val.txt.
//! This is the measurement behind `semiclass export --precision int8`'s
//! default method (BENCHMARKS.md, "int8 export").
//!
//! Usage: int8-calibration CHECKPOINT DATA_DIR CALIBRATION_IMAGES EVAL_IMAGES
//! Prints one line per method: top-1 of both graphs, the drop in points and
//! the top-1 agreement.

use std::path::{Path, PathBuf};

use anyhow::Context;
use semiclass_exporter::int8::Calibrated;
use semiclass_exporter::quantize::{RangeMethod, SCHEME};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, checkpoint, data, calibration, evaluation] = args.as_slice() else {
        anyhow::bail!("usage: int8-calibration CHECKPOINT DATA_DIR CALIBRATION_IMAGES EVAL_IMAGES");
    };
    let (calibration, evaluation): (usize, usize) = (
        calibration.parse().context("CALIBRATION_IMAGES")?,
        evaluation.parse().context("EVAL_IMAGES")?,
    );
    let data = semiclass_dataset::Dataset::open(Path::new(data))?;
    let pool: Vec<PathBuf> = (data.train.iter().map(|e| e.path.under(&data.root)))
        .chain(data.unlabeled.iter().map(|e| e.path.under(&data.root)))
        .collect();
    let step = (pool.len() / calibration.max(1)).max(1);
    let images: Vec<PathBuf> = pool.into_iter().step_by(step).take(calibration).collect();
    let val: Vec<(PathBuf, usize)> = data
        .val
        .iter()
        .take(evaluation)
        .map(|e| (e.path.under(&data.root), e.class_id))
        .collect();
    let lib = PathBuf::from(std::env::var("ORT_DYLIB_PATH").context("ORT_DYLIB_PATH")?);
    let calibrated = Calibrated::measure(Path::new(checkpoint), &lib, &images, SCHEME)?;
    println!(
        "method               fp32 top-1  int8 top-1  drop (points)  agreement  ({} calibration, {} val images)",
        images.len(),
        val.len()
    );
    for method in [
        RangeMethod::MinMax,
        RangeMethod::Percentile(99.99),
        RangeMethod::Percentile(99.999),
        RangeMethod::Entropy,
    ] {
        let s = calibrated.compare(&lib, &calibrated.int8_bytes(method), &val)?;
        let pct = |n: usize| 100.0 * n as f64 / s.images as f64;
        println!(
            "{:<20} {:10.2}  {:10.2}  {:13.2}  {:9.2}",
            method.to_string(),
            pct(s.fp32_correct),
            pct(s.int8_correct),
            pct(s.fp32_correct) - pct(s.int8_correct),
            pct(s.agreeing)
        );
    }
    Ok(())
}
