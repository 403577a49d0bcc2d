//! Calibration: the float model, every planned value made an output, runs
//! over the calibration images; what each value took goes into its
//! histogram ([`crate::quantize::ranges`]).

use std::path::{Path, PathBuf};

use semiclass_manifest::PreprocessSpec;

use super::Int8Error;
use super::session::{Runner, load_batch};
use crate::export::INPUT_NAME;
use crate::quantize::Observations;

/// Images per run: the observing model returns every activation, about
/// 100 MB per 224 px ResNet-50 image.
const BATCH: usize = 4;

/// What the observing model's outputs `measured` took over `images`.
pub fn observe(
    library: &Path,
    observing_model: &[u8],
    measured: &[String],
    images: &[PathBuf],
    spec: &PreprocessSpec,
) -> Result<Observations, Int8Error> {
    let mut runner = Runner::new(library, observing_model, super::THREADS)?;
    let mut observations = Observations::default();
    // The graph input is no output of the model: it is what we feed it.
    let (inputs, outputs): (Vec<String>, Vec<String>) = measured
        .iter()
        .cloned()
        .partition(|name| name == INPUT_NAME);
    for chunk in images.chunks(BATCH) {
        let paths: Vec<&PathBuf> = chunk.iter().collect();
        let batch = load_batch(&paths, spec)?;
        if !inputs.is_empty() {
            observations.add(INPUT_NAME, &batch.data);
        }
        runner.run(batch, &outputs, |name, values| {
            observations.add(name, values)
        })?;
    }
    Ok(observations)
}
